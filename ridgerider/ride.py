"""Ride one ridge: step along a negative-curvature eigenvector, re-finding it as it turns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.tracking import track_eigenvector

EndReason = Literal["curvature-nonnegative", "loss-rose", "step-budget", "non-finite-loss"]


@dataclass(frozen=True)
class RideConfig:
    """When and how a ride moves and stops.

    Attributes:
        step_size: the length of one step in parameter space.
        max_steps: the step budget.
        curvature_tol: the ride ends once the tracked eigenvalue is >= -curvature_tol.
        track: the ridge and its neighbours: how many eigenvectors each step starts from (the
            ridge is the Ritz vector that overlaps most with the previous step's).
        tracking_tol: the residual tolerance of tracking (relative to ||H||). Tight, so that a
            ride does not depend on rounding: stopped early, the tracked vector depends on
            how many products the solve took, which rounding decides, and a ride then drifts
            with the thread count or the CPU (1e-3 let two threads' ride end 0.01 away from
            one thread's; 1e-10 keeps them within 1e-8).
        tracking_matvecs: the product budget of one step's tracking.
    """

    step_size: float = 0.05
    max_steps: int = 1000
    curvature_tol: float = 1e-8
    track: int = 3
    tracking_tol: float = 1e-10
    tracking_matvecs: int = 100


@dataclass(frozen=True)
class RideEnd:
    """Where a ride stopped, why, and what it cost; `vectors` are the ridge and its neighbours
    as last tracked (n x track), a warm start for the eigenpairs at the end."""

    theta: Tensor
    steps: int
    hvps: int
    reason: EndReason
    eigenvalue: float
    vectors: Tensor | None = None


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
    for step in range(1, config.max_steps + 1):
        theta = theta + config.step_size * d
        value = loss(theta).item()
        if not math.isfinite(value):
            return RideEnd(theta, step, hvps, "non-finite-loss", eigenvalue)
        if value > previous:
            return RideEnd(theta, step, hvps, "loss-rose", eigenvalue, _vectors(d, neighbours))
        previous = value
        tracked = track_eigenvector(
            HessianOperator(loss, theta),
            d,
            neighbours,
            tol=config.tracking_tol,
            max_matvecs=config.tracking_matvecs,
            norm_estimate=norm_estimate,
        )
        hvps += tracked.matvecs
        d, eigenvalue, neighbours = tracked.vector, tracked.eigenvalue, tracked.neighbours
        if eigenvalue >= -config.curvature_tol:
            vectors = _vectors(d, neighbours)
            return RideEnd(theta, step, hvps, "curvature-nonnegative", eigenvalue, vectors)
    vectors = _vectors(d, neighbours)
    return RideEnd(theta, config.max_steps, hvps, "step-budget", eigenvalue, vectors)


def _vectors(direction: Tensor, neighbours: Tensor) -> Tensor:
    return torch.cat([direction[:, None], neighbours], 1)
