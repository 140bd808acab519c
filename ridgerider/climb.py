"""Climb from a minimum to the saddle over its basin's rim (minimum hopping).

Rides from the start reach only the minima downhill of it through saddles they end on. On the
tree MDP a decision taken inside a ride (the states two levels above the leaves never have
negative curvature where a ride passes) leaves half of the paying leaves behind saddles that no
ride from the start ends on, but each lies one index-1 saddle beyond a minimum the rides find
(bench/minimum_hopping.py). A climb reaches that saddle, or the saddle of higher index beyond
the rim; the search then goes down both sides of each of its negative ridges.

The climb is eigenvector following (Cerjan-Miller, with the partitioned rational-function step
of Baker 1986) on the whole Hessian, so it is for small problems: up the eigenvector that
continues the climb's direction, a Newton step down every other one, within a trust radius,
until the gradient vanishes. A climb that converges onto a saddle of higher index (negative
curvature beside the climbed direction, a short step) lands on it with Newton steps and ends
there: on the tree MDP that saddle is the subtree across the rim at its own maximum-entropy
point, a branch point whose ridges the search then rides down both ways, as it rides the start's.
Stepping off it instead, on to an index-1 saddle, reached one leaf of that subtree a climb
(bench/RESULTS.md: depth 7, 10 s a tree, 68 against 87 % of the paying leaves).

Long steps can carry a climb over the rim's saddle and back down into a basin (past negative
curvature along the climbed direction, then a point with none anywhere): the critical point it
then converges onto lies on that basin's rim, not beyond the one it passed, and on tree MDPs of
other entropies it was the climb's own minimum again with an unreached state flipped, a paying
leaf behind the passed saddle never found. Such a climb stops where it fell back (unless that
point is critical) and is retaken with a short trust radius. It used to go on to whatever came
next, and only a critical end was retaken: in 20 s searches of three small networks, 80 of the
145 climbs that fell back went on to their step budget or a stiffening direction instead, never
retaken (`tests.problems.tiny_net`'s default search now exhausts with 11 minima instead of 8,
in 154 instead of 141 s; bench/RESULTS.md). A retake goes on where it falls back: on the tree
MDP it then still ends across the rim (depth 4, seed 4, entropy 1.45 times the default: leaf 2,
which a retake that stopped missed).

A climb can also end critical having turned off its direction (`turned_off`): along a
decision with no rim of its own, long steps drift onto the rim of an unreached state, the
minimum with that state flipped (depth 5, seed 26: leaves 5 and 6, behind the level-2 decision
of leaf 1's minimum, were never found). Most climbs of soft directions end that way, on the
rim they are meant to find, and retaking each at once cost 4.5 points of depth 6 at 10 s, so
the search retakes them (`short_steps`) only once all its other work is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor

from ridgerider.critical import rounding_floor, spectral_newton_step
from ridgerider.linalg import gradient_and_hessian
from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE

ClimbReason = Literal["critical", "curvature-rose", "fell-back", "step-budget", "non-finite-loss"]
CURVATURE_FLOOR = 1e-6  # |eigenvalue| / max(||H||, 1) below this counts as this in a Newton step
# The climb gives up once the climbed curvature is this many times its first value. Along a
# mixed tree-MDP state the curvature rises fourfold before it falls to the rim (depth 4, seed
# 104: the only way to a paying leaf); climbs that give up are few (23 of 983 at depth 6).
ROSE = 16.0
MIN_OVERLAP = 0.5  # a step whose climbed eigenvector turns further is retaken shorter
SMOOTH = 0.9  # a step whose climbed eigenvector turns less lets the trust radius grow
GROWTH = 1.5
MAX_RADIUS = 8.0  # the longest step, in ClimbConfig.step
RETAKEN_RADIUS = 2.0  # the longest step of a climb retaken after it fell back into a basin
TURNED_OFF = 0.2  # a climb whose end lies at most this cosine along its direction turned off it
SETTLED = 1 / 64  # a step this short (in ClimbConfig.step) with negative curvature beside: land
# The shortest first step (in ClimbConfig.step): a first step on whose end the climbed curvature
# is already ROSE times the minimum's, or along which the loss falls somewhere (over a rim and
# into the next basin), crossed a basin narrower than itself (wells 1e-3 wide: every climb gave
# up at once, 4 of 8 minima; 1e-4 wide: 4 of 8 still) and is retaken a quarter as long.
SHORTEST_FIRST = 4.0**-8


@dataclass(frozen=True)
class ClimbConfig:
    """How a climb moves and when it stops.

    Attributes:
        step: the first step off the minimum, and the trust radius, which grows up to
            MAX_RADIUS times it while the climbed eigenvector turns little.
        max_steps: Hessians at most, retaken steps included.
        grad_tol: the gradient norm at which the saddle is reached (or the rounding floor
            of the parameters' dtype, where that is larger: `critical.rounding_floor`).
    """

    step: float = 0.3
    max_steps: int = 200
    grad_tol: float = 1e-9


@dataclass(frozen=True)
class ClimbEnd:
    """Where a climb stopped, why ("critical": a critical point to `grad_tol`, the index-1
    saddle over the rim, a saddle of higher index it converged onto, or a minimum it slid to;
    "curvature-rose": the climbed direction stiffens, no rim ahead; "step-budget"; "fell-back"
    ends only the long-step attempt that `climb` then retakes), and the steps and HVPs it
    took."""

    theta: Tensor
    steps: int
    hvps: int
    reason: ClimbReason


@dataclass(frozen=True)
class _Attempt:
    end: ClimbEnd
    fell_back: bool  # into a basin, after negative curvature along the climbed direction


def climb(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    direction: Tensor,
    config: ClimbConfig = ClimbConfig(),
    short_steps: bool = False,
) -> ClimbEnd:
    """Climb from the minimum `theta` along the Hessian eigenvector `direction` (either sign)
    to the critical point over the basin's rim (see `ClimbEnd`).

    A climb that fell back into a basin on its way is stopped there, where that point is not
    critical, and retaken from `theta` with steps of at most RETAKEN_RADIUS first steps; the
    retaken climb's end counts where it is critical, or where the first climb's is not (steps
    and HVPs are both climbs'). With `short_steps` the climb takes such steps from the start.

    Raises:
        ValueError: the problem has more than `WHOLE_SPACE_SIZE` parameters (a climb takes
            the whole Hessian at every step).
    """
    n = theta.numel()
    if n > WHOLE_SPACE_SIZE:
        raise ValueError(
            f"a climb needs the whole Hessian: at most {WHOLE_SPACE_SIZE} parameters, got {n}"
        )
    if short_steps:
        return _climb(loss, theta, direction, config, RETAKEN_RADIUS).end
    first = _climb(loss, theta, direction, config, MAX_RADIUS, stop_fallen=True)
    if not first.fell_back:
        return first.end
    retaken = _climb(loss, theta, direction, config, RETAKEN_RADIUS).end
    end = retaken if retaken.reason == "critical" or first.end.reason != "critical" else first.end
    return replace(end, steps=first.end.steps + retaken.steps, hvps=first.end.hvps + retaken.hvps)


def turned_off(theta: Tensor, direction: Tensor, end: Tensor) -> bool:
    """Whether the climb from `theta` along `direction` ended at most TURNED_OFF (a cosine)
    along it: on a rim other than the one it climbed towards."""
    moved = (end - theta).flatten()
    along = (moved @ direction.flatten().to(moved)).abs().item()
    return along <= TURNED_OFF * moved.norm().item() * direction.norm().item()


def _climb(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    direction: Tensor,
    config: ClimbConfig,
    max_radius: float,
    stop_fallen: bool = False,
) -> _Attempt:
    """One climb with steps of at most `max_radius` first steps, stopped where it fell back
    (if not critical there) where `stop_fallen`."""
    n = theta.numel()
    d = (direction / direction.norm()).to(theta)
    _, H = gradient_and_hessian(loss, theta)
    d64 = d.to(torch.float64).cpu()
    start_curvature = (d64 @ H.to(torch.float64).cpu() @ d64).item()
    step = config.step * d
    previous, x = theta, theta + step
    radius = config.step
    first_curvature = math.nan
    hvps = n
    passed = fell_back = False
    for steps in range(1, config.max_steps + 1):
        g, H = gradient_and_hessian(loss, x)
        H = H.to(torch.float64).cpu()
        hvps += n
        if not (torch.isfinite(g).all() and torch.isfinite(H).all()):
            return _Attempt(ClimbEnd(x, steps, hvps, "non-finite-loss"), fell_back)
        values, vectors = torch.linalg.eigh(H)
        overlaps = vectors.T @ d.to(vectors)
        t = int(overlaps.abs().argmax())
        overlap = abs(overlaps[t].item())
        first = previous is theta and step.norm().item() > config.step * SHORTEST_FIRST
        if first and (
            values[t].item() > ROSE * start_curvature > 0 or _not_uphill(loss, theta, step)
        ):
            step = step / 4  # the first step left the basin: take it shorter
            radius = step.norm().item()
            x = theta + step
            continue
        if overlap < MIN_OVERLAP and step.norm().item() > config.step / 64:
            step = step / 2  # the climbed eigenvector turned too far: retake the step shorter
            radius = step.norm().item()
            x = previous + step
            continue
        radius = min(radius * (GROWTH if overlap > SMOOTH else 1.0), max_radius * config.step)
        if math.isnan(first_curvature):
            first_curvature = values[t].item()
        floor = CURVATURE_FLOOR * max(values.abs().max().item(), 1.0)
        passed = passed or values[t].item() < -floor
        fell_back = fell_back or (passed and values[0].item() >= -floor)
        g64 = g.to(torch.float64).cpu()
        tolerance = max(config.grad_tol, rounding_floor(x, values.abs().max().item()))
        if g64.norm().item() <= tolerance:
            return _Attempt(ClimbEnd(x, steps, hvps, "critical"), fell_back)
        if fell_back and stop_fallen:
            return _Attempt(ClimbEnd(x, steps, hvps, "fell-back"), fell_back)
        if values[t].item() > ROSE * max(first_curvature, 0.0) > 0:
            return _Attempt(ClimbEnd(x, steps, hvps, "curvature-rose"), fell_back)
        d = (vectors[:, t] * torch.sign(overlaps[t])).to(theta)
        step = _step(values, vectors, g64, t).to(theta)
        length = step.norm().item()
        beside = int((values < 0).sum()) > 1  # negative curvature beside the climbed direction
        if values[t] < 0 and beside and length <= config.step * SETTLED:
            step = spectral_newton_step(values, vectors, g64, CURVATURE_FLOOR).to(theta)  # land
            length = step.norm().item()
        if length > radius:
            step = step * (radius / length)
        previous, x = x, x + step
    return _Attempt(ClimbEnd(x, config.max_steps, hvps, "step-budget"), fell_back)


def _not_uphill(loss: Callable[[Tensor], Tensor], theta: Tensor, step: Tensor) -> bool:
    """Whether the loss falls anywhere along `step` from `theta`, at its quarters: a first step
    that went over a rim and down into the next basin."""
    values = [loss(theta + fraction * step).item() for fraction in (0.25, 0.5, 0.75, 1.0)]
    return any(later < earlier for earlier, later in pairwise(values))


def _step(values: Tensor, vectors: Tensor, g: Tensor, t: int) -> Tensor:
    """The partitioned rational-function step: up eigenvector `t` (a maximisation, whatever its
    curvature's sign), Newton down the others (with |eigenvalue|, so down where negative too)."""
    slopes = vectors.T @ g
    floor = CURVATURE_FLOOR * max(values.abs().max().item(), 1.0)
    coefficients = -slopes / values.abs().clamp(min=floor)
    lam, slope = values[t].item(), slopes[t].item()
    coefficients[t] = slope / max(math.sqrt(lam**2 / 4 + slope**2) - lam / 2, floor)
    return vectors @ coefficients
