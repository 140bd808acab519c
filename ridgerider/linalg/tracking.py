"""Re-find one eigenvector of a slightly changed operator: the one that continues a direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE, product, project_out, whole_matrix
from ridgerider.linalg.operators import LinearOperator, as_operator

SHIFTS = 3  # eigenvalues tried as shifts before every eigenvector is computed
SHIFTS_FROM = 64  # the size from which they are (bench/exact_derivatives.py)
SHIFT_TOL = 1e-12  # the residual of a shifted solve's vector, relative to H's infinity norm
OVERLAP_UNIQUE = 2**-0.5  # an eigenvector overlapping a unit vector by more is the only one


@dataclass(frozen=True)
class Tracked:
    """The eigenpair that continues the tracked direction (sign kept), the other Ritz vectors of
    the small space (the next call's neighbours; a whole space found from its eigenvalues keeps
    those it was given), its residual and the products spent."""

    vector: Tensor
    eigenvalue: float
    neighbours: Tensor
    residual: float
    matvecs: int


def track_eigenvector(
    op: LinearOperator | Tensor,
    direction: Tensor,
    neighbours: Tensor | None = None,
    *,
    tol: float = 1e-3,
    norm_estimate: float = 0.0,
    max_matvecs: int = 30,
) -> Tracked:
    """The eigenvector of `op` with the largest overlap with `direction`, by Rayleigh-Ritz on
    [direction, neighbours] grown with residuals until `||r|| <= tol * ||A||`.

    A ride needs the eigenvector that continues its direction, not the k smallest: where
    eigenvalues cluster (a symmetric saddle's copies split as the ride breaks the symmetry), the
    smallest ones converge slowly, while the continuation is found in a few products.

    Args:
        op: a symmetric operator or tensor.
        direction: the previous eigenvector (its sign is kept).
        neighbours: previous eigenvectors of nearby eigenvalues, n x j, or None.
        tol: residual tolerance relative to `max(norm_estimate, largest |Ritz value|)`.
        norm_estimate: an estimate of ||A|| (the space here is too small to find it).
        max_matvecs: product budget; an operator of at most this size (or of lanczos's
            WHOLE_SPACE_SIZE) is solved exactly, its whole space multiplied in one block (far
            faster than one product at a time).
    """
    A = as_operator(op)
    d = (direction / direction.norm()).to(dtype=A.dtype, device=A.device)
    start = d[:, None] if neighbours is None else torch.cat([d[:, None], neighbours.to(d)], 1)
    n = A.shape[0]
    if n <= max(max_matvecs, WHOLE_SPACE_SIZE):  # tiny: its whole space in one block, exact
        return _exactly(whole_matrix(A), d, start[:, 1:])
    V = torch.linalg.qr(start).Q
    AV = product(A, V, 0)
    scale = norm_estimate
    while True:
        T = (V.T @ AV).to(torch.float64).cpu()
        theta, Y = torch.linalg.eigh((T + T.T) / 2)
        scale = max(scale, theta.abs().max().item())
        coordinates = (V.T @ d).to(torch.float64).cpu()
        best = int((Y.T @ coordinates).abs().argmax())
        y = Y[:, best].to(dtype=A.dtype, device=A.device)
        u = V @ y
        r = AV @ y - theta[best].item() * u
        residual = r.norm().item()
        if residual <= tol * scale or AV.shape[1] >= min(max_matvecs, A.shape[0]):
            break
        w = project_out(r[:, None], V)
        V = torch.cat([V, w / w.norm()], 1)
        AV = torch.cat([AV, product(A, V[:, -1:], AV.shape[1])], 1)
    keep = _nearest(theta, best, start.shape[1] - 1)
    sign = 1.0 if (u @ d).item() >= 0 else -1.0
    return Tracked(
        vector=sign * u,
        eigenvalue=theta[best].item(),
        neighbours=V @ Y[:, keep].to(dtype=A.dtype, device=A.device),
        residual=residual,
        matvecs=AV.shape[1],
    )


def _exactly(H: Tensor, d: Tensor, neighbours: Tensor) -> Tracked:
    """The continuation of `d` among all eigenvectors of the whole matrix H, and its nearest
    neighbours in eigenvalue (as many as `neighbours` has columns).

    From SHIFTS_FROM parameters, first from H's eigenvalues alone (a third of an eigh's time,
    the overhead of the solves aside; smaller, one eigh costs less): the eigenvalues nearest the
    Rayleigh quotient of `d` are tried in turn (up to SHIFTS), one solve each with the
    eigenvalue as shift giving its eigenvector to rounding; the one that overlaps `d` by more
    than 1/sqrt(2) is the continuation (no other can: the overlaps' squares sum to one), and
    `neighbours` are kept as they came (a whole space's eigenpairs never start from them).
    Where none does (the ridge turned within the step), every eigenvector is computed
    (`python bench/exact_derivatives.py` times both on real rides' steps)."""
    H64 = ((H + H.T) / 2).to(torch.float64).cpu()
    d64 = d.to(torch.float64).cpu()
    found = _by_shifts(H64, d64 / d64.norm()) if H.shape[0] >= SHIFTS_FROM else None
    if found is not None:
        u64, value = found
        u = u64.to(dtype=d.dtype, device=d.device)
        residual = (H @ u - value * u).norm().item()
        return Tracked(u, value, neighbours.to(u), residual, H.shape[0])
    theta, Y = torch.linalg.eigh(H64)
    best = int((Y.T @ d64).abs().argmax())
    Y = Y.to(dtype=d.dtype, device=d.device)
    u = Y[:, best]
    residual = (H @ u - theta[best].item() * u).norm().item()
    sign = 1.0 if (u @ d).item() >= 0 else -1.0
    return Tracked(
        vector=sign * u,
        eigenvalue=theta[best].item(),
        neighbours=Y[:, _nearest(theta, best, neighbours.shape[1])],
        residual=residual,
        matvecs=H.shape[0],
    )


def _by_shifts(H: Tensor, d: Tensor) -> tuple[Tensor, float] | None:
    """The eigenpair of the float64 matrix H whose vector overlaps the unit vector `d` by more
    than 1/sqrt(2) (sign that of `d`), by inverse iteration from `d` shifted by each of the
    SHIFTS eigenvalues nearest d's Rayleigh quotient; None if none converges to such a
    vector (residual within SHIFT_TOL of H's infinity norm)."""
    values = torch.linalg.eigvalsh(H)
    scale = H.abs().sum(1).max().item()
    quotient = (d @ H @ d).item()
    for index in torch.argsort((values - quotient).abs())[:SHIFTS].tolist():
        value = values[index].item()
        shifted = H.clone()
        shifted.diagonal().sub_(value)
        x = torch.linalg.solve_ex(shifted, d).result
        x = x / x.norm()
        overlap = (x @ d).item()
        if not math.isfinite(overlap) or abs(overlap) <= OVERLAP_UNIQUE:
            continue
        if (H @ x - value * x).norm().item() > SHIFT_TOL * scale:
            return None
        return (x if overlap > 0 else -x), value
    return None


def _nearest(theta: Tensor, best: int, count: int) -> list[int]:
    """The indices of the `count` values of `theta` nearest `theta[best]`, itself excluded: the
    tracked vector's neighbours, the next step's warm start."""
    others = [i for i in torch.argsort((theta - theta[best]).abs()).tolist() if i != best]
    return others[:count]
