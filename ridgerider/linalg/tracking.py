"""Re-find one eigenvector of a slightly changed operator: the one that continues a direction."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE, product, project_out, whole_matrix
from ridgerider.linalg.operators import LinearOperator, as_operator


@dataclass(frozen=True)
class Tracked:
    """The eigenpair that continues the tracked direction (sign kept), the other Ritz vectors of
    the small space (the next call's neighbours), its residual and the products spent."""

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
        return _exactly(whole_matrix(A), d, start.shape[1])
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


def _exactly(H: Tensor, d: Tensor, width: int) -> Tracked:
    """The continuation of `d` among all eigenvectors of the whole matrix H, and its
    `width - 1` nearest neighbours in eigenvalue."""
    theta, Y = torch.linalg.eigh(((H + H.T) / 2).to(torch.float64).cpu())
    best = int((Y.T @ d.to(torch.float64).cpu()).abs().argmax())
    Y = Y.to(dtype=d.dtype, device=d.device)
    u = Y[:, best]
    residual = (H @ u - theta[best].item() * u).norm().item()
    sign = 1.0 if (u @ d).item() >= 0 else -1.0
    return Tracked(
        vector=sign * u,
        eigenvalue=theta[best].item(),
        neighbours=Y[:, _nearest(theta, best, width - 1)],
        residual=residual,
        matvecs=H.shape[0],
    )


def _nearest(theta: Tensor, best: int, count: int) -> list[int]:
    """The indices of the `count` values of `theta` nearest `theta[best]`, itself excluded: the
    tracked vector's neighbours, the next step's warm start."""
    others = [i for i in torch.argsort((theta - theta[best]).abs()).tolist() if i != best]
    return others[:count]
