"""The loss in the engine's units: a loss whose curvature at the start is far below 1 is
multiplied by a power of two before any step sees it.

The engine's tolerances floor at 1 in the loss's units: an eigenvalue is zero below a fraction
of max(||H||, 1), a network's leaf is polished to a fraction of max(1, |loss|), `grad_tol` and
`curvature_tol` are absolute. Where the loss is scaled far down those floors are all there is,
and saddles pass for minima: a deep linear network of 144 parameters returned only saddles
(11 to 16 negative eigenvalues each) with its start's ||H|| at 1e-3, some at 1.6e-2, none at
3.1e-2. Multiplying the loss by a constant moves no critical point and no ridge; multiplying it
by a power of two is exact in floating point, so points, losses and spectra convert between the
user's units and the engine's without rounding, and a loss whose start curvature is at least
RESCALE_BELOW is not touched at all (every built-in problem but the tree MDP at depth 10, and
perhaps 9, whose starts lie at 0.022 and 0.0315: their searches are unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from torch import Tensor

from ridgerider.critical import CriticalPoint
from ridgerider.linalg.exact import exact_derivatives
from ridgerider.problems.base import Problem
from ridgerider.search.ridges import Spectrum
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import Outcome, copy_tolerance

RESCALE_BELOW = 1 / 32  # the start's ||H|| below which the loss is rescaled, to 1 <= ||H|| < 2
# ... unless ||H|| is below this fraction of |loss| there: curvature the loss's own values
# cannot resolve (1 + 1e-20 (x^2 - y^2) rounds to 1 everywhere), which no scale makes a ridge.
RESOLVABLE = 2.0**-30


def loss_scale(root: CriticalPoint) -> float:
    """The power of two the engine multiplies the loss by, from the start `root` (in the user's
    units): 1 where its ||H|| is at least RESCALE_BELOW, or at most RESOLVABLE of |loss| there
    (zero: a degenerate start), else the one that brings ||H|| to between 1 and 2."""
    norm = root.norm_estimate
    if norm >= RESCALE_BELOW or not norm > RESOLVABLE * abs(root.loss):
        return 1.0
    return 2.0 ** math.ceil(-math.log2(norm))


class ScaledLoss:
    """`loss` times `scale`."""

    def __init__(self, loss: Callable[[Tensor], Tensor], scale: float) -> None:
        self.loss, self.scale = loss, scale

    def __call__(self, theta: Tensor) -> Tensor:
        return self.loss(theta) * self.scale


class ScaledExactLoss(ScaledLoss):
    """`loss` times `scale`, with the exact derivatives `loss` carries scaled alike
    (`linalg.exact`)."""

    def value_and_gradient(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        value, gradient = self.loss.value_and_gradient(theta)
        return value * self.scale, gradient * self.scale

    def gradient_and_hessian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        gradient, hessian = self.loss.gradient_and_hessian(theta)
        return gradient * self.scale, hessian * self.scale


class EngineUnits:
    """A search's problem as the engine's steps take it (`problem`), and the conversions of what
    they read and return between the user's units (the tree's) and the engine's. Identities
    where `scale` is 1."""

    def __init__(self, problem: Problem, scale: float) -> None:
        self.scale = scale
        self.problem = problem
        if scale != 1:
            loss = problem.loss
            kind = ScaledExactLoss if exact_derivatives(loss) is not None else ScaledLoss
            self.problem = replace(problem, loss=kind(loss, scale))

    def point_in(self, point: CriticalPoint) -> CriticalPoint:
        return _point_times(point, self.scale)

    def point_out(self, point: CriticalPoint) -> CriticalPoint:
        return _point_times(point, 1 / self.scale)

    def spectrum_in(self, spectrum: Spectrum | None) -> Spectrum | None:
        return _spectrum_times(spectrum, self.scale)

    def spectrum_out(self, spectrum: Spectrum | None) -> Spectrum | None:
        return _spectrum_times(spectrum, 1 / self.scale)

    def outcome_out(self, outcome: Outcome[CriticalPoint]) -> Outcome[CriticalPoint]:
        if self.scale == 1:
            return outcome
        point = None if outcome.point is None else self.point_out(outcome.point)
        failure = None if outcome.failure is None else self.failure_out(outcome.failure)
        spectrum = self.spectrum_out(outcome.spectrum)
        return replace(outcome, point=point, spectrum=spectrum, failure=failure)

    def failure_out(self, message: str) -> str:
        """`message`, from a step that ran in the engine's units, saying which units its losses,
        gradients and tolerances are in."""
        if self.scale == 1:
            return message
        return f"{message} (in the engine's units: the loss times 2^{math.log2(self.scale):.0f})"


def engine_units(problem: Problem, root: CriticalPoint) -> EngineUnits:
    """The engine's units for `problem`, whose search starts at `root` (the user's units)."""
    return EngineUnits(problem, loss_scale(root))


def merge_tolerance(
    problem: Problem, root: CriticalPoint, point: CriticalPoint, spec: SearchSpec
) -> float | None:
    """`steps.copy_tolerance` of `point` as the engine reckons it, in the user's units (the
    tree's, where copies are merged): the gradient between two copies of a point is as small
    in either unit, relative to the loss's scale."""
    units = engine_units(problem, root)
    tolerance = copy_tolerance(units.problem, units.point_in(point), spec)
    return None if tolerance is None else tolerance / units.scale


def _point_times(point: CriticalPoint, factor: float) -> CriticalPoint:
    if factor == 1:
        return point
    return replace(
        point,
        loss=point.loss * factor,
        grad_norm=point.grad_norm * factor,
        eigenvalues=point.eigenvalues * factor,
        norm_estimate=point.norm_estimate * factor,
    )


def _spectrum_times(spectrum: Spectrum | None, factor: float) -> Spectrum | None:
    if factor == 1 or spectrum is None:
        return spectrum
    return replace(
        spectrum, values=spectrum.values * factor, norm_estimate=spectrum.norm_estimate * factor
    )
