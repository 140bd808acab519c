"""Ride one ridge: step along a negative-curvature eigenvector, re-finding it as it turns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ridgerider.linalg import HessianOperator, eigsh

EndReason = Literal["curvature-nonnegative", "loss-rose", "step-budget", "non-finite-loss"]


@dataclass(frozen=True)
class RideConfig:
    """When and how a ride moves and stops.

    Attributes:
        step_size: the length of one step in parameter space.
        max_steps: the step budget.
        curvature_tol: the ride ends once the tracked eigenvalue is >= -curvature_tol.
        track: how many of the smallest eigenpairs are re-computed at each step (the ridge and
            its neighbours, among which the ridge is the one that overlaps most).
        tracking_tol: the eigensolver tolerance for tracking (relative to ||H||).
    """

    step_size: float = 0.05
    max_steps: int = 1000
    curvature_tol: float = 1e-8
    track: int = 3
    tracking_tol: float = 1e-6


@dataclass(frozen=True)
class RideEnd:
    """Where a ride stopped, why, and what it cost."""

    theta: Tensor
    steps: int
    hvps: int
    reason: EndReason
    eigenvalue: float


def ride(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    direction: Tensor,
    config: RideConfig = RideConfig(),
) -> RideEnd:
    """Follow the ridge that starts at `theta` along `direction` (an eigenvector, either sign).

    At each step the eigenvector with the largest overlap with the previous one is re-found by a
    warm-started eigsh (a few HVPs, not a fresh Lanczos) and its sign is kept.
    """
    n = theta.numel()
    track = min(config.track, n)
    d = direction / direction.norm()
    block = torch.cat(
        [
            d[:, None],
            torch.randn(n, track - 1, dtype=d.dtype, generator=torch.Generator().manual_seed(0)).to(
                d
            ),
        ],
        1,
    )
    previous = loss(theta).item()
    hvps = 0
    eigenvalue = math.nan
    for step in range(1, config.max_steps + 1):
        theta = theta + config.step_size * d
        value = loss(theta).item()
        if not math.isfinite(value):
            return RideEnd(theta, step, hvps, "non-finite-loss", eigenvalue)
        if value > previous:
            return RideEnd(theta, step, hvps, "loss-rose", eigenvalue)
        previous = value
        result = eigsh(
            HessianOperator(loss, theta), track, "SA", v0=block, tol=config.tracking_tol, seed=step
        )
        hvps += result.info.matvecs
        overlaps = result.eigenvectors.T @ d
        best = int(overlaps.abs().argmax())
        d = result.eigenvectors[:, best] * torch.sign(overlaps[best])
        eigenvalue = result.eigenvalues[best].item()
        block = result.eigenvectors
        if eigenvalue >= -config.curvature_tol:
            return RideEnd(theta, step, hvps, "curvature-nonnegative", eigenvalue)
    return RideEnd(theta, config.max_steps, hvps, "step-budget", eigenvalue)
