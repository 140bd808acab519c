"""The pure steps of a search, each a function of (problem, spec, state): classify the start,
expand a branch point, follow a ridge to the next point of the tree, evaluate a solution. The
in-memory tree and the database-backed one call these same functions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, TypeVar

import torch
from torch import Tensor

from ridgerider.climb import ClimbConfig, climb, turned_off
from ridgerider.critical import (
    ROUNDING_FLOOR,
    SOLUTION_KINDS,
    CriticalPoint,
    SettleConfig,
    classify,
    escape_to_minimum,
    lower_along_flat,
    point_of,
    rounding_floor,
    settle,
    settle_to_minimum,
    zero_rtol,
)
from ridgerider.linalg import HessianOperator
from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE
from ridgerider.linalg.exact import loss_gradient
from ridgerider.metrics import minimum_metrics
from ridgerider.problems.base import Problem
from ridgerider.ride import RideEnd, ride
from ridgerider.search.archive import find_copy
from ridgerider.search.fingerprint import retaken
from ridgerider.search.ridges import (
    Ridge,
    Spectrum,
    choose_ridges,
    drop_mirrored,
    equal_groups,
    negative_spectrum,
    node_spectrum,
    orient,
    ridge_policy,
    spectrum_at,
)
from ridgerider.search.spec import SearchSpec, SettleTarget

NodeWork = Literal["expand", "evaluate", "none"]
Expansion = tuple[Spectrum, list[tuple[int, int]], int]  # spectrum, (eigen index, sign), HVPs
P = TypeVar("P")
START_GRAD_RTOL = 1e-5
NUDGE = 1e-6  # relative size of the nudge before a descent to a minimum
COPY_SLACK = 10.0  # see copy_tolerance
ORIENTATION_TOL = 1e-8  # slopes and third derivatives below this are rounding
PRACTICAL_CLASSIFY_TOL = 1e-4  # eigsh's residual tolerance classifying a network's leaf
LEAF_ESCAPES = 3  # steps off the negative curvature a network's descent stopped on
CLIMB_STEP = 16  # a climb's trust radius, in step_size
STEP_SAMPLES = 8  # losses sampled along a step down a ridge, to see a rim it crossed
CLIMB_TURNED = "climb-turned"  # a climb's end reason: critical, having turned off its direction


def seed_generators(seed: int) -> None:
    """Seed torch's global generators before a step, so that a step is a function of its inputs:
    the CPU's always, CUDA's once it is in use (`torch.manual_seed` also seeds every other
    backend, half a millisecond a call: 4 % of a depth-7 tree MDP's search)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class StartError(ValueError):
    """The search cannot start: the problem has no start, or it is not a critical point."""


@dataclass(frozen=True)
class Outcome(Generic[P]):
    """What following a ridge gave: the ride's steps, HVPs (settling included) and why it
    stopped, and the point it led to (with its spectrum where it is a branch point, computed on
    the way), or the reason it failed. The engine's point is a CriticalPoint; a database keeps
    its own record of it in the same shape (`storage.records.RideResult`). `step_hvps` and
    `overlaps` are each ride step's tracking products and ridge overlap (`ride.RideEnd`); `cut`
    says that a limit made a leaf of a ride's end that had negative curvature to branch on
    (a `last` ride under settle = "branch")."""

    steps: int
    hvps: int
    end_reason: str
    point: P | None = None
    failure: str | None = None
    spectrum: Spectrum | None = None
    step_hvps: tuple[int, ...] = field(default=(), repr=False)
    overlaps: tuple[float, ...] = field(default=(), repr=False)
    cut: bool = False


def start_point(problem: Problem, spec: SearchSpec) -> CriticalPoint:
    """The problem's start, classified.

    Raises:
        StartError: the problem has no start, or its start is not a critical point.
    """
    if problem.start is None:
        raise StartError(f"problem {problem.name!r} has no start point; give one")
    _check_loss_at_start(problem)
    seed_generators(spec.seed)
    root = classify(problem.loss, problem.start, zero_modes=problem.zero_modes)
    if root.grad_norm > (tolerance := start_tolerance(root)):
        raise StartError(
            f"the start of {problem.name!r} is not a critical point: gradient norm "
            f"{root.grad_norm:.3g}, above the tolerance {tolerance:.3g} ({START_GRAD_RTOL:g} of "
            f"||H|| (1 + ||theta||), ||H|| = {root.norm_estimate:.3g} there)"
        )
    return root


def start_tolerance(root: CriticalPoint) -> float:
    """The gradient norm a start may have: START_GRAD_RTOL of ||H|| (1 + ||theta||), a Newton
    step of that fraction of 1 + ||theta||, and no less than rounding leaves. A constant added
    to the loss, which moves no critical point, does not move it either."""
    scale = root.norm_estimate * (1 + root.theta.norm().item())
    return max(START_GRAD_RTOL * scale, rounding_floor(root.theta, root.norm_estimate))


def _check_loss_at_start(problem: Problem) -> None:
    """Raise StartError unless the loss at the start is one finite number: a loss that returns
    a vector, or NaN or Inf there, is the user's to fix, not a ride's to fail."""
    value = problem.loss(problem.start)
    if not isinstance(value, Tensor) or value.dim() != 0:
        shape = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise StartError(
            f"the loss of {problem.name!r} must return a scalar (0-dimensional) tensor; at the "
            f"start it returned {shape}"
        )
    if not math.isfinite(value.item()):
        raise StartError(f"the loss of {problem.name!r} is not finite at the start: {value.item()}")


DEGENERATE_START = "degenerate start: no negative curvature to ride, no minimum to climb from"


def start_stop(root: CriticalPoint) -> str | None:
    """Why a search ends at its start, where it has nothing to do there: a degenerate start
    without negative curvature (a higher-order point; a network whose activation has no second
    derivative, flat along every unit split) has no ridge; None otherwise."""
    return DEGENERATE_START if root.kind == "degenerate" and root.index == 0 else None


def work_of(point: CriticalPoint, depth: int, spec: SearchSpec) -> NodeWork:
    """A solution is evaluated; a point with negative curvature above `max_depth` is
    expanded; anything else (a degenerate point, a saddle at the depth limit) is kept."""
    if point.kind in SOLUTION_KINDS:
        return "evaluate"
    return "expand" if point.index > 0 and depth < spec.max_depth else "none"


def depth_cut(point: CriticalPoint, work: NodeWork) -> bool:
    """Whether `max_depth` left a new node unexpanded (`work_of`): negative curvature, no work."""
    return work == "none" and point.index > 0


def expand(
    problem: Problem, point: CriticalPoint, spec: SearchSpec, spectrum: Spectrum | None = None
) -> Expansion:
    """The spectrum of a branch point (`spectrum`, if it was computed when the point was
    reached), the (eigen index, sign) of each ride to take from it (`choose_ridges`, less
    mirror images: `drop_mirrored`), and the HVPs spent."""
    seed_generators(spec.seed)
    hvps = 0
    if spectrum is None:
        spectrum = node_spectrum(problem, point, spec)
        hvps = spectrum.hvps
    gradient = loss_gradient(problem.loss, point.theta)
    spectrum = orient(spectrum, gradient, spec.step_size)
    rides = choose_ridges(problem, spectrum, spec, zero_rtol(problem.dim), gradient)
    return spectrum, drop_mirrored(problem, point.theta, spectrum, rides, spec.step_size), hvps


def climbs_from(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> bool:
    """Whether the search climbs from `point`: a minimum, where `spec` climbs from minima."""
    return point.kind == "minimum" and spec.climbs_minima(problem)


def climbs(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> Expansion | None:
    """The climbs to take from a minimum (`SearchSpec.climb_minima`): its whole spectrum, the
    (eigen index, sign) of each climb (one eigenvector per group of equal eigenvalues under
    "one-per-group", stiffest first, at most `ridges_per_node` of them, both ways unless the
    two are mirror images, `drop_mirrored`) and the HVPs spent; None where minima are not
    climbed from.

    Stiffest first: a minimum's stiff directions are the decisions it has committed to (a
    tree-MDP policy's path states), whose rims lead to other solutions; its soft ones are what
    the loss hardly constrains (unreached states), whose rims lead back to copies of it. Taken
    first, the stiff climbs are the ones a time budget still runs (measured on unseen tree-MDP
    seeds, bench/RESULTS.md), and the ones a cap of `ridges_per_node` keeps."""
    if not climbs_from(problem, point, spec):
        return None
    spectrum = spectrum_at(problem, point.theta, problem.dim, spec.seed)
    every = ridge_policy(problem, spec) == "every-direction"
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    chosen = [index for group in groups[::-1] for index in (group if every else group[:1])]
    rides = [(index, sign) for index in chosen[: spec.ridges_per_node] for sign in (1, -1)]
    step = spec.step_size * CLIMB_STEP
    return spectrum, drop_mirrored(problem, point.theta, spectrum, rides, step), spectrum.hvps


def follow(
    problem: Problem,
    start: CriticalPoint,
    ridge: Ridge,
    spec: SearchSpec,
    target: SettleTarget,
    last: bool = False,
    over_budget: Callable[[], bool] | None = None,
) -> Outcome[CriticalPoint]:
    """Ride `ridge` from `start` and say where it leads, by `target`:

    - "saddle": the critical point beneath the ride's end (descent along positive curvature,
      then Newton), classified; where Newton does not converge (it cycles in a coercive
      quartic's wells), the minimum a descent reaches from there; where it is the ride's own
      start again (`_back_at_start`: a ridge of curvature near zero, as along a network's dead
      hidden units), the minimum a descent reaches from there, stepping off any saddle it
      stops on (`critical.escape_to_minimum`), so that the ride does not loop back;
    - "minimum": the minimum L-BFGS reaches from the ride's end; from a small problem's point,
      from one step down the ridge, with no ride (`_steps_down`);
    - "branch": the ride's end itself while negative curvature is left there (a branch point,
      its spectrum computed); else a leaf, polished to a minimum (`leaf = "minimum"`) or kept
      as it is (`leaf = "ride-end"`).

    A ridge with a positive eigenvalue, from a minimum, is a climb (`_climbed`), not a ride.
    A ridge that turns within the ride's shortest first step cannot be followed (in a group of
    equal eigenvalues whose ridges the higher derivatives pick, not the canonical basis: at
    the maximum of sum(((Q x)_i^2 - 1)^2), Q a rotation): whatever the target, it is one step
    down its side and a descent to a minimum (`_step_down`), not a ride back to its start.

    A `last` ride (its end could not be expanded: the depth limit, or the last point the node
    budget allows) ends in a leaf whatever the target, and so does a ride that ends when
    `over_budget()` says a budget (time, HVPs) has run out meanwhile: a budget still returns
    minima.
    """
    seed_generators(spec.seed)
    if ridge.eigenvalue > 0:
        return _climbed(problem, start, ridge, spec)
    if target == "minimum" and _steps_down(problem, start):
        end = _step_down(problem, start, ridge, spec)
    else:
        end = ride(
            problem.loss,
            start.theta,
            ridge.direction,
            spec.ride_config(problem),
            neighbours=ridge.neighbours,
            norm_estimate=ridge.norm_estimate,
        )
    if end.reason == "ridge-turned" and end.steps == 0:
        end, target = replace(_step_down(problem, start, ridge, spec), hvps=end.hvps), "minimum"
    if end.reason == "non-finite-loss":
        failure = "the loss turned NaN or Inf during the ride"
        return Outcome(end.steps, end.hvps, end.reason, failure=failure)
    last = last or (over_budget is not None and over_budget())
    try:
        cut = False
        if target == "branch":
            point, spectrum, hvps, cut = _ride_end(problem, start, end, spec, last)
        else:
            settle_to = "minimum" if last else target
            point, hvps = _settled(problem, end.theta, spec, settle_to, start)
            if settle_to == "saddle" and not _settled_enough(problem, point, spec):
                point, descent_hvps = _settled(problem, end.theta, spec, "minimum", start)
                hvps += descent_hvps
            elif settle_to == "saddle" and _back_at_start(problem, point, start, spec):
                point, descent_hvps = _settled(
                    problem, end.theta, spec, "minimum", start, escape_saddles=True
                )
                hvps += descent_hvps
            spectrum = None
    except FloatingPointError as error:
        return Outcome(end.steps, end.hvps, end.reason, failure=f"settling failed: {error}")
    hvps += end.hvps
    if not _settled_enough(problem, point, spec):
        return Outcome(end.steps, hvps, end.reason, failure=_short_of_critical(point, spec))
    return Outcome(
        end.steps,
        hvps,
        end.reason,
        point=point,
        spectrum=spectrum,
        step_hvps=end.step_hvps,
        overlaps=end.overlaps,
        cut=cut,
    )


def _back_at_start(
    problem: Problem, point: CriticalPoint, start: CriticalPoint, spec: SearchSpec
) -> bool:
    """Whether a ride's settled end is the saddle it started from (or a symmetric copy of it):
    the ride found nothing, and a tree whose every ride from a saddle does so ends with no
    minimum below it (a tanh regressor's zero point, settling on saddles, bench/RESULTS.md)."""
    tolerance = copy_tolerance(problem, point, spec)
    return find_copy(problem, point.theta, [(0, start.theta)], spec, tolerance) is not None


def _climbed(
    problem: Problem, start: CriticalPoint, ridge: Ridge, spec: SearchSpec
) -> Outcome[CriticalPoint]:
    """Where a climb from the minimum `start` leads: the critical point it reached (the saddle
    over the rim, a branch point like any other), classified, or, where it found none (its
    direction stiffens, or the step budget ran out), `start` itself: the climb's edge then
    loops back to its minimum. A climb that ended critical having turned off its direction
    ends "climb-turned" (`climb.turned_off`): the tree retakes it with short steps once all its
    other work is done (`Tree.waiting_climbs`); the retake is the ridge's sign doubled
    (`fingerprint.RETAKEN`)."""
    config = ClimbConfig(step=spec.step_size * CLIMB_STEP, grad_tol=spec.grad_tol)
    short_steps = retaken(ridge.sign)
    end = climb(problem.loss, start.theta, ridge.direction, config, short_steps)
    if end.reason == "non-finite-loss":
        failure = "the loss turned NaN or Inf during the climb"
        return Outcome(end.steps, end.hvps, end.reason, failure=failure)
    if end.reason != "critical":
        return Outcome(end.steps, end.hvps, f"climb-{end.reason}", point=start)
    point = classify(problem.loss, end.theta, zero_modes=problem.zero_modes)
    turned = not short_steps and turned_off(start.theta, ridge.direction, end.theta)
    reason = CLIMB_TURNED if turned else "climb-critical"
    return Outcome(end.steps, end.hvps + point.hvps, reason, point=point)


def _steps_down(problem: Problem, start: CriticalPoint) -> bool:
    """Whether a ride to a minimum from `start` is one step down its ridge and a descent: from
    every critical point with negative curvature of a small problem (exact eigenpairs).

    From an index-1 saddle the ridge has one way down on each side, into the basins of the two
    minima the saddle joins (the ends of the minimum-energy path through it). From a saddle of
    higher index the descent, started on the ridge, follows its negative curvature as a ride
    would, and at a fraction of the cost: a ride tracks its ridge at a whole Hessian and an eigh
    a step, and where the ridge turns, other negative directions take over in the ride as they
    do in the descent. Measured on unseen depth-7 tree MDPs (bench/RESULTS.md), 10 s a tree: 47
    % of the paying leaves with rides, 55-60 % with steps of 0.02 to 2."""
    return start.index > 0 and problem.dim <= WHOLE_SPACE_SIZE


def _step_down(problem: Problem, start: CriticalPoint, ridge: Ridge, spec: SearchSpec) -> RideEnd:
    """In place of a ride from a small problem's critical point (`_steps_down`), or of any ride
    whose ridge turned within its first step (`follow`), the longest step rides take (`max_step`
    times `step_size`) down the ridge's side, from which the settle descends to a minimum: no
    ridge tracked at a whole Hessian a step. On depth-4 tree
    MDPs (seeds 0-50, exhausted) steps of `step_size` missed a paying leaf on 3 trees, the
    longest step on 1 (bench/RESULTS.md). A step that crosses a rim (`_rim_crossed`) ends
    before it, in the basin the ridge leads into. A step onto a NaN or Inf loss ends there, as
    a ride's would ("non-finite-loss")."""
    length = spec.step_size * spec.ride_config(problem).max_step
    step = length * ridge.direction / ridge.direction.norm()
    values = [start.loss]
    for fraction in torch.arange(1, STEP_SAMPLES + 1).div(STEP_SAMPLES).tolist():
        values.append(problem.loss(start.theta + fraction * step).item())
        if not math.isfinite(values[-1]):
            theta = start.theta + fraction * step
            return RideEnd(theta, 0, 0, "non-finite-loss", ridge.eigenvalue)
    rim = _rim_crossed(values)
    fraction = 1.0 if rim is None else rim / STEP_SAMPLES
    return RideEnd(start.theta + fraction * step, 0, 0, "descended", ridge.eigenvalue)


def _rim_crossed(values: list[float]) -> int | None:
    """Where a step down a ridge sampled at `values` (its start first) should end if it went
    over a rim, the loss rising past the ridge's basin and falling again beyond: the last sample
    before the first rise (the basin's lowest sampled point); None if no rim was crossed."""
    rises = [k for k in range(1, len(values)) if values[k] > values[k - 1]]
    if not rises:
        return None
    first = rises[0]
    falls = any(values[k] < values[k - 1] for k in range(first + 1, len(values)))
    return first - 1 if falls and first > 1 else None


def _short_of_critical(point: CriticalPoint, spec: SearchSpec) -> str:
    """Why a settled point is no critical point, with what to look at: a gradient within a
    thousand times the tolerance asks for a larger `grad_tol`, or, where the tolerance is the
    dtype's rounding floor, for float64; a larger one, a descent that did not converge (a loss
    unbounded below, a descent that ran off)."""
    tolerance = critical_tolerance(point, spec)
    floor = rounding_floor(point.theta, point.norm_estimate)
    if point.grad_norm <= 1e3 * tolerance and tolerance <= floor:
        hint = (
            f"the tolerance is the rounding floor of {point.theta.dtype} there "
            f"({ROUNDING_FLOOR} eps ||H|| (1 + ||theta||)), which a descent in this dtype may "
            "not reach: compute the loss in float64"
        )
    elif point.grad_norm <= 1e3 * tolerance:
        hint = f"if this loss's rounding allows no closer, raise grad_tol ({spec.grad_tol:g})"
    else:
        hint = (
            f"the descent did not converge: it stopped at |theta| = "
            f"{point.theta.norm().item():.3g}, loss {point.loss:.3g} (is the loss bounded below?)"
        )
    return (
        f"settling ended short of a critical point: gradient norm {point.grad_norm:.3g} above "
        f"the tolerance {tolerance:.3g} (the Hessian's smallest eigenvalues there "
        f"{_few(point.eigenvalues)}); {hint}"
    )


def _few(values: Tensor) -> str:
    return ", ".join(f"{value:.3g}" for value in values[:3].tolist())


def _settled_enough(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> bool:
    """Whether a ride's settled end is what it should be: a critical point to `grad_tol` (with
    the margin of Newton's last step) where minima are exact; a finite gradient at a
    network's practical minimum; anything at a branch point or a ride's end."""
    if point.kind in ("branch", "ride-end"):
        return True
    if spec.exact_minima(problem) or point.kind != "minimum":
        return point.grad_norm <= critical_tolerance(point, spec)
    return math.isfinite(point.grad_norm)


def copy_tolerance(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> float | None:
    """The gradient norm on the way between `point` and a copy of it within `merge_tol`
    (`archive.find_copy`): COPY_SLACK times its critical tolerance where minima are exact and
    `point` is a critical point (between two copies of one, the gradient is a mean of theirs to
    second order); None at branch points, ride ends and a network's practical minima, whose
    copies are told by distance alone."""
    if not spec.exact_minima(problem) or point.kind in ("branch", "ride-end"):
        return None
    return COPY_SLACK * critical_tolerance(point, spec)


def critical_tolerance(point: CriticalPoint, spec: SearchSpec) -> float:
    """The gradient norm below which a settled point counts as critical: `grad_tol` with the
    margin of Newton's last step, or, where the Hessian is so large that rounding alone leaves
    more, the gradient's rounding floor there (`critical.rounding_floor`: a
    Himmelblau scaled by 1e8 stops at gradients of 1e-6 to 7e-6, its ||H|| 1e10)."""
    return max(1e3 * spec.grad_tol, rounding_floor(point.theta, point.norm_estimate))


def _settled(
    problem: Problem,
    theta: Tensor,
    spec: SearchSpec,
    target: SettleTarget,
    sizing: CriticalPoint,
    spectrum: Spectrum | None = None,
    escape_saddles: bool = False,
) -> tuple[CriticalPoint, int]:
    """The critical point `target` settles `theta` on, classified, and the HVPs spent.

    A descent to a minimum starts from `theta` nudged within its negative-curvature subspace
    (from `spectrum` at `theta`, computed sized as `sizing`'s where not given; see `_nudge`),
    grown to hold every negative eigenvalue where minima are exact; a network's nudge uses the
    pairs computed, which breaks the symmetries they hold the same way everywhere and leaves
    the others to rounding. Where the descent ends flat beyond the problem's zero modes, it
    goes on if the loss falls along a flat direction, and is otherwise a minimum
    (`_flat_as_minimum`), at every size: second order alone left a small network's minima
    with a dead hidden unit degenerate, and its search without a solution."""
    config = spec.settle_config(problem)
    if target == "saddle":
        settled, hvps = settle(problem.loss, theta, config)
    else:
        hvps = 0
        if spectrum is None:
            spectrum = node_spectrum(problem, sizing, spec, theta=theta)
            hvps += spectrum.hvps
        whole = spectrum
        if spec.exact_minima(problem):
            whole = negative_spectrum(problem, theta, spectrum, zero_rtol(problem.dim), spec.seed)
        nudge, nudge_hvps = _nudge(problem, theta, whole)
        settled, polish_hvps = settle_to_minimum(problem.loss, theta + nudge, config)
        hvps += whole.hvps - spectrum.hvps + nudge_hvps + polish_hvps
    exact = spec.exact_minima(problem)
    escapes = 0
    while True:
        point = _exact_point(problem, settled) if exact else _practical_point(problem, settled)
        hvps += point.hvps
        if target != "minimum":
            return point if exact else _flat_as_minimum(point), hvps
        if point.kind == "degenerate":
            lower, flat_hvps = lower_along_flat(problem.loss, settled, zero_rtol(problem.dim))
            hvps += flat_hvps
            if lower is None:
                return _flat_as_minimum(point), hvps
        elif point.kind != "saddle" or (exact and not escape_saddles):
            return point, hvps
        if escapes == LEAF_ESCAPES:
            return point, hvps
        if point.kind == "saddle":
            settled, escape_hvps = escape_to_minimum(problem.loss, settled, config)
        else:
            settled, escape_hvps = settle_to_minimum(problem.loss, lower, config)
        hvps += escape_hvps
        escapes += 1


def _exact_point(problem: Problem, theta: Tensor) -> CriticalPoint:
    """`theta` classified from its whole spectrum (or the smallest pairs, to `eigsh`'s default
    tolerance)."""
    return classify(problem.loss, theta, zero_modes=problem.zero_modes)


def _practical_point(problem: Problem, theta: Tensor) -> CriticalPoint:
    """`theta` classified to a network's practical tolerance."""
    return classify(problem.loss, theta, zero_modes=problem.zero_modes, tol=PRACTICAL_CLASSIFY_TOL)


def _flat_as_minimum(point: CriticalPoint) -> CriticalPoint:
    """A descent's end with more flat directions than the problem declares is a minimum
    unless the loss falls along one of them (`critical.lower_along_flat`: a descent goes on
    from there): its flatness is a family of minima (a ring; a hidden unit whose outgoing
    weight is zero, flat along its undecayed bias), or a network leaf's tolerance."""
    return replace(point, kind="minimum") if point.kind == "degenerate" else point


def _nudge(problem: Problem, theta: Tensor, spectrum: Spectrum) -> tuple[Tensor, int]:
    """A nudge (NUDGE relative) that breaks every symmetry of `theta` a descent could break,
    the same way on every machine and for every symmetric copy of `theta`; the HVPs spent.

    A ride's end often keeps units exactly symmetric (a ride carried by one unit leaves the
    others alone); descent from there breaks the symmetry one way or another by rounding,
    which differs between CPUs, thread counts and processes, and the minimum reached with it.
    The nudge is a sum of the canonical negative-curvature eigenvectors with distinct weights
    (the canonical basis of a copy is the copy of the basis), each turned downhill: by the
    slope, or where it vanishes (at a point of symmetry) by the third derivative along it, both
    odd in the vector."""
    negative = -zero_rtol(problem.dim) * max(spectrum.norm_estimate, 1.0)
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    if spectrum.truncated and len(groups) > 1:
        groups = groups[:-1]  # not a canonical basis: the group may go on
    chosen = [i for group in groups for i in group if spectrum.values[i] < negative]
    nudge = torch.zeros_like(theta)
    if not chosen:
        return nudge, 0
    gradient = loss_gradient(problem.loss, theta)
    step = 1e-4 * (1 + theta.norm().item())
    hvps = 0
    for rank, index in enumerate(chosen):
        vector = spectrum.vectors[:, index]
        slope = (gradient @ vector).item()
        if abs(slope) <= ORIENTATION_TOL:
            ahead = HessianOperator(problem.loss, theta + step * vector).matvec(vector)
            behind = HessianOperator(problem.loss, theta - step * vector).matvec(vector)
            slope = ((ahead - behind) @ vector).item() / (2 * step)  # the third derivative
            hvps += 2
        sign = -1.0 if slope > ORIENTATION_TOL else 1.0
        nudge += sign / (1 + rank) * vector
    return NUDGE * (1 + theta.norm().item()) * nudge / nudge.norm(), hvps


def _ride_end(
    problem: Problem, start: CriticalPoint, end: RideEnd, spec: SearchSpec, last: bool
) -> tuple[CriticalPoint, Spectrum | None, int, bool]:
    """The node a ride's end becomes under settle = "branch" (see `follow`), and whether `last`
    cut it (made a leaf of an end with negative curvature). Its spectrum, sized as the ride's
    start's (the symmetry a ride keeps, it keeps in its groups) and warm started from the
    tracked vectors, is computed once: it classifies the end and, at a branch point, gives its
    ridges. The end of a `last` ride, a leaf whatever its curvature, gets only the few
    smallest pairs that classify it and nudge its descent."""
    if last:
        k = min(max(SettleConfig.probe, spec.ride_config().track), problem.dim)
        spectrum = spectrum_at(problem, end.theta, k, spec.seed, end.vectors)
    else:
        spectrum = node_spectrum(problem, start, spec, v0=end.vectors, theta=end.theta)
    probe = point_of(
        problem.loss,
        end.theta,
        spectrum.values,
        spectrum.norm_estimate,
        spectrum.hvps,
        zero_modes=problem.zero_modes,
    )
    if probe.index > 0 and not last:
        return replace(probe, kind="branch"), spectrum, probe.hvps, False
    cut = probe.index > 0
    if spec.leaf == "ride-end":
        return replace(probe, kind="ride-end"), None, probe.hvps, cut
    point, hvps = _settled(problem, end.theta, spec, "minimum", start, spectrum)
    return point, None, probe.hvps + hvps, cut


def evaluate(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> dict[str, float]:
    """The behavioural metrics of a solution."""
    seed_generators(spec.seed)
    return minimum_metrics(problem, point)
