"""Critical points: settle onto one from nearby, and say what kind it is."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator as ScipyOperator
from scipy.sparse.linalg import minres
from torch import Tensor
from torch.func import grad

from ridgerider.lbfgs import MEMORY, lbfgs
from ridgerider.linalg import EigshResult, HessianOperator, eigsh, gradient_and_hessian
from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE
from ridgerider.linalg.exact import loss_gradient
from ridgerider.linalg.lanczos import attainable_tol

Kind = Literal["minimum", "saddle", "maximum", "degenerate", "branch", "ride-end"]
SOLUTION_KINDS = ("minimum", "ride-end")
CURVED_KINDS = ("saddle", "maximum", "branch")  # points with negative curvature
FLAT_KINDS = ("minimum", "degenerate", "ride-end")  # points without


def kinds_alike(kind: Kind) -> tuple[Kind, ...]:
    """The kinds a point of `kind` may be the same point as: those with negative curvature, or
    those without. A minimum a rounding step from the maximum it was ridden from is no copy
    of it, however close the two lie."""
    return CURVED_KINDS if kind in CURVED_KINDS else FLAT_KINDS


ZERO_RTOL = 1e-6  # an eigenvalue is zero when |lambda| <= ZERO_RTOL * max(||H||, 1)
# ... and, where the whole spectrum comes from a dense eigensolve (at most WHOLE_SPACE_SIZE
# parameters, eigenvalues to about eps ||H||), when |lambda| <= EXACT_ZERO_RTOL * max(||H||, 1):
# at 1e-6, double wells whose curvatures span a factor of 1e6 lost their softest negative
# direction, and their saddles read as degenerate points (0 of 16 minima).
EXACT_ZERO_RTOL = 1e-10
ROUNDING_FLOOR = 8  # epsilons of ||H|| (1 + ||theta||): a gradient this small is rounding
# A network's descent that stops with a gradient entry this many times its tolerance did not
# reach a minimum (a loss unbounded below runs off to gradients of 1e49); digits-mlp's leaves
# stop within 1 times it.
UNCONVERGED = 1e3
# MINRES's relative residual for a step finishing a stalled descent: each step then cuts the
# gradient about a hundredfold, at a fraction of the products an exact solve takes.
FINISH_RTOL = 1e-2
FLAT_SHORTEST = 1e-3  # of a tenth of 1 + ||theta||: the shortest step along a flat direction


@dataclass(frozen=True)
class SettleConfig:
    """How a ride's end is settled onto a critical point.

    Attributes:
        grad_tol: the gradient norm at which a point counts as critical.
        descent_steps: at most this many descent steps along positive curvature first (a
            problem of at most `WHOLE_SPACE_SIZE` parameters takes Newton steps within the
            positive-curvature eigenspace instead, at most `newton_steps` of them).
        descent_tol: stop descending once the positive-curvature gradient is below this
            fraction of the full gradient's norm at the start.
        newton_steps: at most this many Newton steps (MINRES on HVPs) to polish.
        probe: how many of the smallest eigenpairs are computed to guide and classify.
        minimum_tol: the gradient tolerance of the L-BFGS descent to a minimum (its largest
            entry): absolute where `polish`, else relative to max(1, |loss|) at its start.
        polish: whether a minimum is then polished by Newton steps to `grad_tol` (exact
            critical points, for small problems); a network's leaf is the practical
            minimum L-BFGS reaches.
        memory: the past steps L-BFGS keeps.
    """

    grad_tol: float = 1e-9
    descent_steps: int = 500
    descent_tol: float = 1e-3
    newton_steps: int = 30
    probe: int = 8
    minimum_tol: float = 1e-7
    polish: bool = True
    memory: int = MEMORY


@dataclass(frozen=True)
class CriticalPoint:
    """A point of the tree, its loss and gradient norm, and what its spectrum says it is.

    Most are critical points; a Ridge Rider tree also keeps the ends of rides, which are not:
    a "branch" point (negative curvature left: the tree branches there) and a "ride-end" leaf
    (none left, kept as the ride left it). `index` is the number of negative eigenvalues among
    those computed (every one up to `WHOLE_SPACE_SIZE` parameters, else the `probe` smallest),
    a lower bound when all of them are negative (`index_is_exact` is then False);
    `eigenvalues` are the `probe` smallest, ascending; `norm_estimate` estimates ||H||.
    """

    theta: Tensor
    loss: float
    grad_norm: float
    kind: Kind
    index: int
    eigenvalues: Tensor
    hvps: int
    index_is_exact: bool = True
    norm_estimate: float = 0.0


def classify(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    *,
    probe: int = 8,
    zero_tol: float | None = None,
    zero_modes: int = 0,
    v0: Tensor | None = None,
    tol: float | None = None,
) -> CriticalPoint:
    """Kind and index of `theta` from the smallest eigenvalues of the Hessian there (`probe` of
    them; all, and the index exact, for a problem of at most `WHOLE_SPACE_SIZE` parameters,
    whose whole spectrum `eigsh` computes anyway; warm started from `v0`, e.g. the vectors a
    ride tracked, where given; to `eigsh`'s residual `tol`, its default where None; ||H||
    itself to 1e-3).

    An eigenvalue is zero when |lambda| <= zero_tol * max(||H||, 1) (`zero_rtol` of the
    problem's size where None). A point with no negative
    eigenvalue but more zero ones than the problem's declared `zero_modes` is `degenerate`:
    second order cannot certify it is a minimum (x^2 + y^3, the monkey saddle).
    """
    op = HessianOperator(loss, theta)
    n = theta.numel()
    low = eigsh(op, n if n <= WHOLE_SPACE_SIZE else min(probe, n), "SA", v0=v0, tol=tol, seed=0)
    norm_estimate, norm_hvps = hessian_norm(op, low, n, 1e-3)
    hvps = low.info.matvecs + norm_hvps
    values = low.eigenvalues.cpu()
    point = point_of(loss, theta, values, norm_estimate, hvps, zero_tol, zero_modes)
    return replace(point, eigenvalues=values[:probe])


def zero_rtol(n: int) -> float:
    """Relative to max(||H||, 1), the largest |eigenvalue| that counts as zero in a problem of
    `n` parameters: to the accuracy its spectra are computed to (see EXACT_ZERO_RTOL)."""
    return EXACT_ZERO_RTOL if n <= WHOLE_SPACE_SIZE else ZERO_RTOL


def rounding_floor(theta: Tensor, norm_estimate: float) -> float:
    """The gradient norm that rounding alone may leave at `theta`, in its dtype, where ||H|| is
    `norm_estimate` (ROUNDING_FLOOR eps ||H|| (1 + ||theta||)): no step gets below it, so a
    tolerance under it is never met (1e-9 in float32)."""
    eps = torch.finfo(theta.dtype).eps
    return ROUNDING_FLOOR * eps * max(norm_estimate, 1.0) * (1 + theta.norm().item())


def hessian_norm(
    op: HessianOperator, low: EigshResult, n: int, tol: float, seed: int = 0
) -> tuple[float, int]:
    """An estimate of ||H|| beside the smallest eigenpairs `low` of `op` (`n` parameters), and
    the HVPs it took: exact where `eigsh` solved the whole space (at most `WHOLE_SPACE_SIZE`
    parameters); the largest |eigenvalue| where `low` holds every one; else the larger of that
    and the top eigenvalue, solved to `tol`."""
    if n <= WHOLE_SPACE_SIZE:
        return low.info.anorm, 0
    bottom = low.eigenvalues.abs().max().item()
    if low.eigenvalues.numel() >= n:
        return bottom, 0
    top = eigsh(op, 1, "LA", tol=tol, seed=seed)
    return max(abs(top.eigenvalues[0].item()), bottom), top.info.matvecs


def point_of(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    values: Tensor,
    norm_estimate: float,
    hvps: int,
    zero_tol: float | None = None,
    zero_modes: int = 0,
) -> CriticalPoint:
    """`theta` classified (see `classify`) from the smallest eigenvalues of its Hessian,
    `values` (ascending), computed for `hvps` products."""
    n = theta.numel()
    zero_tol = zero_rtol(n) if zero_tol is None else zero_tol
    scale = max(norm_estimate, 1.0)
    negative = int((values < -zero_tol * scale).sum())
    zeros = int((values.abs() <= zero_tol * scale).sum())
    if negative == 0:
        kind: Kind = "degenerate" if zeros > zero_modes else "minimum"
    elif negative == n:
        kind = "maximum"
    else:
        kind = "saddle"
    return CriticalPoint(
        theta=theta,
        loss=loss(theta).item(),
        grad_norm=loss_gradient(loss, theta).norm().item(),
        kind=kind,
        index=negative,
        eigenvalues=values,
        hvps=hvps,
        index_is_exact=negative < values.numel() or values.numel() == n,
        norm_estimate=norm_estimate,
    )


def settle(
    loss: Callable[[Tensor], Tensor], theta: Tensor, config: SettleConfig = SettleConfig()
) -> tuple[Tensor, int]:
    """The critical point below a ride's end, and the HVPs it cost.

    First descend along positive curvature only (the negative-curvature directions are held),
    so the point slides down to the saddle beneath rather than past it; then polish with Newton
    steps solved by MINRES on HVPs. A plain Newton jump from the ride's end can leap past the
    saddle below and lose its branch (KNOWN-ANSWERS.md: 3 of Himmelblau's 4 minima instead of 4).
    A problem of at most `WHOLE_SPACE_SIZE` parameters is settled exactly (`_settle_exactly`).
    """
    if theta.numel() <= WHOLE_SPACE_SIZE:
        return _settle_exactly(loss, theta, config)
    gradient_of = grad(loss)
    n = theta.numel()
    vectors = None
    start_norm = gradient_of(theta).norm().item()
    top = eigsh(HessianOperator(loss, theta), 1, "LA", tol=1e-3, seed=0)
    step_size = 1 / max(top.eigenvalues[0].item(), 1e-12)
    hvps = top.info.matvecs
    tol = attainable_tol(1e-6, theta.dtype)
    for _ in range(config.descent_steps):
        low = eigsh(HessianOperator(loss, theta), min(config.probe, n), "SA", v0=vectors, tol=tol)
        hvps += low.info.matvecs
        vectors = low.eigenvectors
        g = gradient_of(theta)
        negative = vectors[:, low.eigenvalues < 0]
        g = g - negative @ (negative.T @ g)
        if g.norm().item() <= max(config.descent_tol * start_norm, config.grad_tol):
            break
        theta, step_size = _descend(loss, theta, g, step_size)
    theta, products = _newton_polish(loss, theta, config)
    return theta, hvps + products


def _settle_exactly(
    loss: Callable[[Tensor], Tensor], theta: Tensor, config: SettleConfig
) -> tuple[Tensor, int]:
    """`settle` for a small problem: Newton steps within the positive-curvature eigenspace of
    the whole Hessian (backtracked; the negative directions held) until the gradient left there
    is below the descent tolerance, then Newton on the whole space. A few Hessians, where the
    descent one direction at a time takes hundreds of steps."""
    n = theta.numel()
    hvps = 0
    start_norm = None
    for _ in range(config.newton_steps):
        g, H = gradient_and_hessian(loss, theta)
        hvps += n
        if start_norm is None:
            start_norm = g.norm().item()
        values, vectors = torch.linalg.eigh(H.to(torch.float64).cpu())
        positive = values > zero_rtol(n) * max(values.abs().max().item(), 1.0)
        basis = vectors[:, positive].to(theta)
        slopes = basis.T @ g
        if slopes.norm().item() <= max(config.descent_tol * start_norm, config.grad_tol):
            break
        step = -basis @ (slopes / values[positive].to(theta))
        theta = _backtrack(loss, theta, step, g)
    return _newton_polish(loss, theta, config, hvps)


def _backtrack(loss: Callable[[Tensor], Tensor], theta: Tensor, step: Tensor, g: Tensor) -> Tensor:
    """theta + t step for the first t in 1, 1/2, ... (60 halvings) meeting Armijo's condition
    (`step` a descent direction of gradient `g`); theta where none does."""
    current = loss(theta).item()
    slope = (g @ step).item()
    t = 1.0
    for _ in range(60):
        value = loss(theta + t * step).item()
        if math.isfinite(value) and value <= current + 0.5 * t * slope:
            return theta + t * step
        t /= 2
    return theta


def settle_to_minimum(
    loss: Callable[[Tensor], Tensor], theta: Tensor, config: SettleConfig = SettleConfig()
) -> tuple[Tensor, int]:
    """The minimum that L-BFGS reaches from `theta`, polished by Newton steps (MINRES on HVPs)
    where `config.polish` (else only where L-BFGS stalled above its tolerance:
    `_finish_by_newton`), and the HVPs spent. For networks, whose negative-curvature subspace
    is too large to hold.

    Raises:
        FloatingPointError: the loss turned NaN or Inf, or, unpolished, the descent stopped
            with a gradient entry more than UNCONVERGED times its tolerance.
    """
    tol = config.minimum_tol
    if not config.polish:
        tol *= max(1.0, abs(loss(theta).item()))
    theta, value = lbfgs(loss, theta, gradient_tol=tol, max_iterations=20_000, memory=config.memory)
    if not math.isfinite(value):
        why = {
            -math.inf: "is the loss bounded below?",
            math.inf: "is the loss finite everywhere?",
        }.get(value, "is the loss bounded below? is it defined everywhere?")
        raise FloatingPointError(f"the loss turned {value} while settling ({why})")
    if not config.polish:
        gradient = loss_gradient(loss, theta)
        hvps = 0
        if not gradient.abs().max().item() <= tol:
            theta, gradient, hvps = _finish_by_newton(loss, theta, gradient, tol, config)
        largest = gradient.abs().max().item()
        if not largest <= UNCONVERGED * tol:
            raise FloatingPointError(
                f"the descent stopped with a gradient entry of {largest:.3g}, more than "
                f"{UNCONVERGED:g} times its tolerance {tol:.3g} (is the loss bounded below?)"
            )
        return theta, hvps
    return _newton_polish(loss, theta, config)


def _finish_by_newton(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    gradient: Tensor,
    tol: float,
    config: SettleConfig,
) -> tuple[Tensor, Tensor, int]:
    """From where L-BFGS stopped, its `gradient` having an entry above `tol`: inexact Newton
    steps, each kept while it lowers the gradient's largest entry; the point, its gradient and
    the HVPs spent. L-BFGS's line search compares loss values, which float32 rounds at eps |loss|,
    so it stalls near a gradient of sqrt(eps ||H|| |loss|) (a norm of 1e-3 to 2e-3 on a deep
    linear network of 144 parameters, several times float32's rounding floor there, and the
    ride failed); a Newton step needs only gradients and HVPs, and goes on down to that
    floor."""
    hvps = 0
    largest = gradient.abs().max().item()
    for _ in range(config.newton_steps):
        if largest <= tol:
            break
        step, products = newton_step(loss, theta, gradient, rtol=FINISH_RTOL)
        hvps += products
        candidate = theta + step
        reached = loss_gradient(loss, candidate)
        entry = reached.abs().max().item()
        if not entry < largest:
            break
        theta, gradient, largest = candidate, reached, entry
    return theta, gradient, hvps


def escape_to_minimum(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    config: SettleConfig = SettleConfig(),
    tol: float = 1e-4,
) -> tuple[Tensor, int]:
    """From `theta`, where a descent stopped with negative curvature left (a practical
    minimum on a shallow saddle), a step down along the negative eigenvectors (each oriented
    downhill; backtracking from a tenth of 1 + ||theta||) and a descent again; the HVPs
    spent. `theta` itself if no step lowers the loss."""
    op = HessianOperator(loss, theta)
    low = eigsh(op, min(config.probe, theta.numel()), "SA", tol=tol, seed=0)
    hvps = low.info.matvecs
    negative = low.eigenvectors[:, low.eigenvalues < 0]
    if not negative.shape[1]:
        return theta, hvps
    slopes = grad(loss)(theta) @ negative
    direction = (negative * torch.where(slopes > 0, -1.0, 1.0).to(negative)).sum(1)
    direction = direction / direction.norm()
    current = loss(theta).item()
    step = 0.1 * (1 + theta.norm().item())
    for _ in range(30):
        candidate = theta + step * direction
        if loss(candidate).item() < current:
            settled, polish_hvps = settle_to_minimum(loss, candidate, config)
            return settled, hvps + polish_hvps
        step /= 2
    return theta, hvps


def lower_along_flat(
    loss: Callable[[Tensor], Tensor], theta: Tensor, zero_tol: float, tol: float = 1e-4
) -> tuple[Tensor | None, int]:
    """A point below `theta` along a flat direction of its Hessian (an eigenvalue within
    `zero_tol` of ||H||, among its 8 smallest), each tried both ways at steps from a tenth of
    1 + ||theta|| down to FLAT_SHORTEST of it; and the HVPs spent. A degenerate point whose loss
    falls so by more than its slope and rounding explain is no minimum (the monkey saddle
    x^3 - 3xy^2 falls along -x, at third order); None where no direction lowers it (a family
    of minima, flat along itself, rises off every line)."""
    op = HessianOperator(loss, theta)
    low = eigsh(op, min(8, theta.numel()), "SA", tol=tol, seed=0)
    norm_estimate, norm_hvps = hessian_norm(op, low, theta.numel(), 1e-3)
    flat = low.eigenvectors[:, low.eigenvalues.abs() <= zero_tol * max(norm_estimate, 1.0)]
    hvps = low.info.matvecs + norm_hvps
    current = loss(theta).item()
    gradient = loss_gradient(loss, theta)
    rounding = 64 * torch.finfo(theta.dtype).eps * abs(current)
    longest = 0.1 * (1 + theta.norm().item())
    for vector in flat.T:
        slope = abs((gradient @ vector).item())
        for sign in (1.0, -1.0):
            step = longest
            while step >= FLAT_SHORTEST * longest:
                candidate = theta + sign * step * vector
                if loss(candidate).item() < current - 2 * slope * step - rounding:
                    return candidate, hvps
                step /= 2
    return None, hvps


def _newton_polish(
    loss: Callable[[Tensor], Tensor], theta: Tensor, config: SettleConfig, hvps: int = 0
) -> tuple[Tensor, int]:
    """Newton steps (MINRES on HVPs; the whole Hessian's pseudo-inverse for a small problem)
    until the gradient norm is below `config.grad_tol`; the HVPs, counted on from `hvps`."""
    for _ in range(config.newton_steps):
        g = loss_gradient(loss, theta)
        if not torch.isfinite(g).all():
            raise FloatingPointError("the gradient turned NaN or Inf while settling")
        if g.norm().item() <= config.grad_tol:
            break
        step, products = newton_step(loss, theta, g)
        hvps += products
        theta = theta + step
    return theta, hvps


def _descend(
    loss: Callable[[Tensor], Tensor], theta: Tensor, direction: Tensor, step_size: float
) -> tuple[Tensor, float]:
    """One backtracking (Armijo) step along -direction, a descent direction; the step that
    worked, doubled, is the next one's first try."""
    current = loss(theta).item()
    slope = direction.square().sum().item()
    for _ in range(60):
        candidate = theta - step_size * direction
        value = loss(candidate).item()
        if math.isfinite(value) and value <= current - 0.5 * step_size * slope:
            return candidate, 2 * step_size
        step_size /= 2
    return theta, step_size


def spectral_newton_step(values: Tensor, vectors: Tensor, g: Tensor, rtol: float) -> Tensor:
    """The Newton step -H^+ g from H's eigenpairs, leaving out the directions whose |eigenvalue|
    is at most `rtol * max(||H||, 1)` (flat ones, where the step would blow up)."""
    kept = values.abs() > rtol * max(values.abs().max().item(), 1.0)
    basis = vectors[:, kept]
    return -basis @ ((basis.T @ g) / values[kept])


def newton_step(
    loss: Callable[[Tensor], Tensor], theta: Tensor, g: Tensor, rtol: float = 1e-12
) -> tuple[Tensor, int]:
    """The Newton step -H^+ g by MINRES on HVPs to the relative residual `rtol` (H may be
    indefinite or singular); exactly, from the whole Hessian, for a small problem."""
    op = HessianOperator(loss, theta)
    n = theta.numel()
    if n <= WHOLE_SPACE_SIZE:
        values, vectors = torch.linalg.eigh(op.dense().to(torch.float64).cpu())
        solution = spectral_newton_step(values, vectors, g.double().cpu(), ZERO_RTOL * 1e-6)
        return solution.to(theta), n

    def matvec(x: np.ndarray) -> np.ndarray:
        v = torch.as_tensor(x.reshape(-1), dtype=theta.dtype, device=theta.device)
        return op.matvec(v).double().cpu().numpy()

    linear = ScipyOperator((n, n), matvec=matvec, dtype=np.float64)
    solution, _ = minres(linear, -g.double().cpu().numpy(), rtol=rtol, maxiter=max(20, 2 * n))
    return torch.as_tensor(solution, dtype=theta.dtype, device=theta.device), op.matvecs
