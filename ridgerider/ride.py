"""Ride one ridge: step along a negative-curvature eigenvector, re-finding it as it turns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.tracking import track_eigenvector

# "descended": no ride, one step down a small problem's ridge (search.steps.follow) before a descent
EndReason = Literal[
    "curvature-nonnegative",
    "loss-rose",
    "ridge-turned",
    "step-budget",
    "non-finite-loss",
    "descended",
]
MIN_OVERLAP = 0.9  # consecutive ridges of an accepted step overlap at least this much
STEP_GROWTH = 1.5  # an accepted step's successor is this much longer (up to max_step)
SHORTEST_STEP = 1 / 64  # the shortest step tried, as a fraction of step_size


@dataclass(frozen=True)
class RideConfig:
    """When and how a ride moves and stops.

    Attributes:
        step_size: the length of a ride's first step in parameter space.
        max_steps: the step budget (accepted steps).
        curvature_tol: the ride ends once the tracked eigenvalue is >= -curvature_tol.
        track: the ridge and its neighbours: how many eigenvectors each step starts from (the
            ridge is the Ritz vector that overlaps most with the previous step's).
        tracking_tol: the residual tolerance of tracking (relative to ||H||). 3e-3 costs a few
            products a step; 1e-10 makes a ride independent of rounding (the tracked vector of
            a loose solve depends on how many products it took, which rounding decides), at
            about ten times the cost (bench/search.py).
        tracking_matvecs: the product budget of one step's tracking.
        adaptive: the step adapts (a backtracking line search along the ridge): a step that
            raises the loss or turns the ridge by more than MIN_OVERLAP allows is halved and
            tried again (down to SHORTEST_STEP of step_size; a ridge that still turns that far
            within the shortest step, where eigenvalues meet, is not followed across: the ride
            ends there, "ridge-turned"), and each accepted one lets the
            next grow by STEP_GROWTH up to `max_step`. A ride then lasts as long as the ridge
            descends; a fixed step ends at the first rise.
        max_step: the longest step, as a multiple of step_size (longer steps turned the ridge
            too far and were retaken: more products for the same ride, measured on digits-mlp).
            A step longer than step_size that ends with the curvature turned non-negative is
            halved and retaken, so the ride ends within step_size of where it turns, as it
            would with steps of step_size.
    """

    step_size: float = 0.02
    max_steps: int = 10_000
    curvature_tol: float = 1e-8
    track: int = 2
    tracking_tol: float = 3e-3
    tracking_matvecs: int = 100
    adaptive: bool = True
    max_step: float = 1.0


@dataclass(frozen=True)
class RideEnd:
    """Where a ride stopped, why, and what it cost; `vectors` are the ridge and its neighbours
    as last tracked (n x track), a warm start for the eigenpairs at the end. `step_hvps` and
    `overlaps` are each accepted step's tracking products (those of tries retaken shorter
    included) and the overlap of its ridge with the previous step's (what bench/search.py
    reports of real rides)."""

    theta: Tensor
    steps: int
    hvps: int
    reason: EndReason
    eigenvalue: float
    vectors: Tensor | None = None
    step_hvps: tuple[int, ...] = field(default=(), repr=False)
    overlaps: tuple[float, ...] = field(default=(), repr=False)


def ride(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    direction: Tensor,
    config: RideConfig = RideConfig(),
    neighbours: Tensor | None = None,
    norm_estimate: float | None = None,
) -> RideEnd:
    """Follow the ridge that starts at `theta` along `direction` (an eigenvector, either sign).

    At each step the eigenvector with the largest overlap with the previous one is re-found,
    warm-started from it and its neighbours (a few HVPs, not a fresh Lanczos); its sign is kept.
    The eigenvectors of nearby eigenvalues at the start (`neighbours`, n x (track - 1)) and an
    estimate of ||H|| are computed here unless the caller, who has them, passes them.
    """
    d = direction / direction.norm()
    hvps = 0
    if neighbours is None:
        first = eigsh(HessianOperator(loss, theta), min(config.track, theta.numel()), "SA")
        hvps += first.info.matvecs
        overlaps = (first.eigenvectors.T @ d).abs()
        neighbours = first.eigenvectors[:, torch.argsort(overlaps)[:-1]]
    if norm_estimate is None:
        top = eigsh(HessianOperator(loss, theta), 1, "LA", tol=1e-2)
        hvps += top.info.matvecs
        norm_estimate = abs(top.eigenvalues[0].item())
    previous = loss(theta).item()
    eigenvalue = math.nan
    step = config.step_size
    shortest = config.step_size * SHORTEST_STEP if config.adaptive else config.step_size
    step_hvps: list[int] = []
    overlaps: list[float] = []
    retaken = 0  # products of tracking a step that was then retaken shorter

    def end(reason: EndReason) -> RideEnd:
        vectors = torch.cat([d[:, None], neighbours], 1)
        steps = len(step_hvps)
        return RideEnd(theta, steps, hvps, reason, eigenvalue, vectors, (*step_hvps,), (*overlaps,))

    while len(step_hvps) < config.max_steps:
        candidate = theta + step * d
        value = loss(candidate).item()
        if not math.isfinite(value):
            return RideEnd(candidate, len(step_hvps) + 1, hvps, "non-finite-loss", eigenvalue)
        if value > previous:
            if step / 2 < shortest:
                return end("loss-rose")
            step /= 2
            continue
        tracked = track_eigenvector(
            HessianOperator(loss, candidate),
            d,
            neighbours,
            tol=config.tracking_tol,
            max_matvecs=config.tracking_matvecs,
            norm_estimate=norm_estimate,
        )
        hvps += tracked.matvecs
        overlap = (tracked.vector @ d).item()
        turned = overlap < MIN_OVERLAP  # the ridge turned too far within the step
        if turned and step / 2 < shortest:
            return end("ridge-turned")
        overshot = tracked.eigenvalue >= -config.curvature_tol and step > config.step_size
        if turned or overshot:
            retaken += tracked.matvecs
            step /= 2  # retake the step shorter
            continue
        theta, previous = candidate, value
        d, eigenvalue, neighbours = tracked.vector, tracked.eigenvalue, tracked.neighbours
        step_hvps.append(retaken + tracked.matvecs)
        retaken = 0
        overlaps.append(overlap)
        if eigenvalue >= -config.curvature_tol:
            return end("curvature-nonnegative")
        if config.adaptive:
            step = min(step * STEP_GROWTH, config.max_step * config.step_size)
    return end("step-budget")
