"""Extreme eigenpairs of a symmetric operator: block Lanczos, fully reorthogonalised, restarted.

Why block: at the symmetric saddles Ridge Rider starts from, the most negative eigenvalues
repeat (H-1 or H copies for H interchangeable hidden units). A Krylov space grown from one
vector holds one direction of each eigenspace, so single-vector Lanczos (ARPACK) returns
fewer copies than there are. A block of b starting vectors holds up to b copies, so with
b >= k the k wanted pairs come back with their full multiplicity; the products of a block
also run as one batched call (`matmat`).

Why the Rayleigh-Ritz form: the basis V and its products A V are both kept, so residuals
`A V y - theta V y` are exact at no extra product. Each new block is spanned by the residuals
of the wanted Ritz pairs that have not converged yet; while none has, that is exactly the next
block Lanczos block, and once some have, they stop costing products.

Why thick restart: the basis is capped at `max_basis` vectors; when it is full, the most
wanted Ritz vectors are kept with their products and the expansion continues from them, which
keeps what has converged so far (unlike a restart from scratch) and costs no product.

The projected matrix (the Rayleigh quotient V^T A V) is kept and diagonalised in float64
whatever the operator's dtype, and every new block is orthogonalised twice against the
whole basis (classical Gram-Schmidt, twice is enough).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from ridgerider.linalg.blocks import (
    WHOLE_SPACE_SIZE,
    product,
    project_out,
    whole_matrix,
)
from ridgerider.linalg.operators import LinearOperator, as_operator

Which = Literal["SA", "LA"]
DEFAULT_TOL = {torch.float64: 1e-8, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
MAX_DEFAULT_MATVECS = 20_000
BASIS_MEMORY = 1 << 30  # bytes the default basis (V and A V) may take


def attainable_tol(tol: float, dtype: torch.dtype) -> float:
    """`tol`, or `dtype`'s default tolerance where that is looser: the products of a float32
    operator carry rounding of about 1e-6 of ||A||, so a tighter residual is never met and
    Lanczos spends its whole product budget trying (6,100 products for one sharpness)."""
    return max(tol, DEFAULT_TOL.get(dtype, 1e-5))


class ConvergenceWarning(UserWarning):
    """`eigsh` ran out of products before every wanted pair met the tolerance."""


@dataclass(frozen=True)
class EigshInfo:
    """How a solve went.

    Attributes:
        matvecs: operator products spent (a block of b counts b).
        residuals: `||A v - lambda v||` of each returned pair (float64, CPU), from the Lanczos
            relation, which full reorthogonalisation keeps exact to rounding.
        converged: whether each pair met `residual <= tol * anorm`.
        anorm: the estimate of `||A||_2` the tolerance is relative to (largest |Ritz value|).
        tol: the relative tolerance used.
        restarts: how many times the basis was full and was thick-restarted.
    """

    matvecs: int
    residuals: Tensor
    converged: Tensor
    anorm: float
    tol: float
    restarts: int

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


class EigshResult(NamedTuple):
    """`eigenvalues` (float64, on the operator's device; ascending for "SA", descending for
    "LA"), `eigenvectors` (n x k, operator's dtype and device, orthonormal) and `info`."""

    eigenvalues: Tensor
    eigenvectors: Tensor
    info: EigshInfo


def eigsh(
    op: LinearOperator | Tensor,
    k: int,
    which: Which = "SA",
    *,
    tol: float | None = None,
    v0: Tensor | None = None,
    max_matvecs: int | None = None,
    block_size: int | None = None,
    max_basis: int | None = None,
    seed: int = 0,
    exact_below: int = WHOLE_SPACE_SIZE,
) -> EigshResult:
    """The k most negative ("SA") or most positive ("LA") eigenpairs of a symmetric operator.

    Args:
        op: a symmetric tensor, or an object with `shape`, `dtype`, `device` and `matvec`
            (and optionally a batched `matmat`, which is then used for every block).
        k: how many pairs, 1 <= k <= n.
        which: "SA" (smallest algebraic, the most negative) or "LA" (largest algebraic).
        tol: a pair has converged when `||A v - lambda v|| <= tol * ||A||`; default 1e-8 in
            float64, 1e-5 in float32.
        v0: starting vector(s), shape (n,) or (n, j): a warm start from the previous
            eigenvectors of a nearby operator; padded with random vectors up to the block size.
            It may hold more columns than the block (guard vectors, up to n / 2): tracking one
            pair is cheapest when its neighbours come along, since a small change of the
            operator mixes an eigenvector mostly with those of nearby eigenvalues.
        max_matvecs: product budget; default min(10 n, 20000). If it runs out, the pairs
            found so far are returned with `converged` flags and a `ConvergenceWarning`.
        block_size: vectors per Lanczos block, default k; it bounds the multiplicity of an
            eigenvalue that can be resolved, so keep it >= the largest multiplicity wanted.
        max_basis: the basis size at which the solver thick-restarts; default
            max(4 k, k + 6 b, 30), capped at n.
        seed: seeds the random start vectors (drawn on the CPU, so every device starts alike).
        exact_below: an operator of at most this size (and a budget of n products) is solved
            exactly from one block of n products and a dense eigh; 0 always iterates.

    Returns:
        An `EigshResult(eigenvalues, eigenvectors, info)`.

    Raises:
        ValueError: k, which, tol, v0, block_size, max_basis or max_matvecs out of range, or an
            operator that is not square or not symmetric.
        NonFiniteProductError: a product returned NaN or Inf (the product's number is named).
    """
    A = as_operator(op)
    n = A.shape[0]
    _check_int("k", k, 1, n)
    if which not in ("SA", "LA"):
        raise ValueError(f'which must be "SA" or "LA", got {which!r}')
    b = k if block_size is None else block_size
    _check_int("block_size", b, 1, n)
    m = _default_basis(n, k, b, A.dtype) if max_basis is None else max_basis
    _check_int("max_basis", m, min(k + b, n), n)
    budget = max_matvecs if max_matvecs is not None else min(10 * n, MAX_DEFAULT_MATVECS)
    _check_int("max_matvecs", budget, b, None)
    tol = DEFAULT_TOL.get(A.dtype, 1e-5) if tol is None else tol
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")

    generator = torch.Generator().manual_seed(seed)
    start = _start_block(v0, n, b, A.dtype, A.device)
    if n <= exact_below and budget >= n:
        return _whole_space(A, k, which, tol)
    V = torch.empty(n, m, dtype=A.dtype, device=A.device)
    AV = torch.empty_like(V)
    T = torch.zeros(m, m, dtype=torch.float64)
    start_scale = torch.linalg.vector_norm(start, dim=0).max().item() if start.shape[1] else 1.0
    X = _orthonormal_block(start, V[:, :0], max(b, start.shape[1]), start_scale, generator)
    j = matvecs = restarts = 0
    anorm = 0.0
    symmetry_checked = False
    while True:
        AX = product(A, X, matvecs)
        matvecs += X.shape[1]
        if j and not symmetry_checked:
            _check_symmetric(V[:, :j].T @ AX, AV[:, :j].T @ X, anorm)
            symmetry_checked = True
        width = X.shape[1]
        V[:, j : j + width] = X
        AV[:, j : j + width] = AX
        column = (V[:, : j + width].T @ AX).to(torch.float64).cpu()
        column[j:] = (column[j:] + column[j:].T) / 2
        T[: j + width, j : j + width] = column
        T[j : j + width, : j + width] = column.T
        j += width

        theta, Y = torch.linalg.eigh(T[:j, :j])
        anorm = max(anorm, theta.abs().max().item())
        order = _wanted(theta, max(k, b), which)
        Yo = Y[:, order].to(dtype=A.dtype, device=A.device)
        U = V[:, :j] @ Yo
        R = AV[:, :j] @ Yo - U * theta[order].to(dtype=A.dtype, device=A.device)
        norms = torch.linalg.vector_norm(R, dim=0).to(torch.float64).cpu()
        residuals = norms[:k]
        converged = residuals <= tol * anorm
        if converged.all() or j == n or matvecs >= budget:
            break
        # The residuals of the unconverged wanted Ritz pairs (and of the guard pairs past k when
        # b > k) span the next Lanczos block; converged pairs stop costing products.
        expand = [i for i in range(order.numel()) if i >= k or not converged[i]][:b]
        width = min(len(expand), n - j, budget - matvecs)
        X = _orthonormal_block(R[:, expand], V[:, :j], width, anorm, generator)
        if j + width > m:
            keep = _wanted(theta, min(max(k, b, (m - b) // 2), m - width), which)
            Yk = Y[:, keep].to(dtype=A.dtype, device=A.device)
            V[:, : keep.numel()] = V[:, :j] @ Yk
            AV[:, : keep.numel()] = AV[:, :j] @ Yk
            j = keep.numel()
            T.zero_()
            T[torch.arange(j), torch.arange(j)] = theta[keep]
            restarts += 1

    vectors = _fix_signs(U[:, :k])
    info = EigshInfo(matvecs, residuals, converged, anorm, tol, restarts)
    if not info.all_converged:
        warnings.warn(
            f"eigsh: {int(converged.sum())} of {k} pairs converged to tol={tol:g} within "
            f"{matvecs} products (max_matvecs={budget}); largest residual "
            f"{residuals.max().item():.3g} against {tol * anorm:.3g} wanted",
            ConvergenceWarning,
            stacklevel=2,
        )
    return EigshResult(theta[order[:k]].to(A.device), vectors, info)


def _whole_space(A: LinearOperator, k: int, which: Which, tol: float) -> EigshResult:
    """The k wanted pairs of a tiny operator, exactly: its whole matrix (`whole_matrix`), eigh."""
    n = A.shape[0]
    AV = whole_matrix(A)
    _check_symmetric(AV, AV.T, 0.0)
    theta, Y = torch.linalg.eigh(((AV + AV.T) / 2).to(torch.float64).cpu())
    order = _wanted(theta, k, which)
    vectors = _fix_signs(Y[:, order].to(dtype=A.dtype, device=A.device))
    R = AV @ vectors - vectors * theta[order].to(dtype=A.dtype, device=A.device)
    residuals = torch.linalg.vector_norm(R.to(torch.float64), dim=0).cpu()
    anorm = theta.abs().max().item()
    info = EigshInfo(n, residuals, residuals <= tol * anorm, anorm, tol, 0)
    return EigshResult(theta[order].to(A.device), vectors, info)


def _default_basis(n: int, k: int, b: int, dtype: torch.dtype) -> int:
    """16 blocks (few restarts: each costs convergence), within BASIS_MEMORY for V and AV."""
    affordable = BASIS_MEMORY // (2 * n * torch.finfo(dtype).bits // 8)
    return min(max(min(max(16 * b, 4 * k, 40), affordable), k + b), n)


def _check_int(name: str, value: int, low: int, high: int | None) -> None:
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")


def _wanted(theta: Tensor, count: int, which: Which) -> Tensor:
    """Indices of the `count` wanted Ritz values (theta is ascending)."""
    count = min(count, theta.numel())
    if which == "SA":
        return torch.arange(count)
    return torch.arange(theta.numel() - 1, theta.numel() - 1 - count, -1)


def _start_block(
    v0: Tensor | None, n: int, b: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    if v0 is None:
        return torch.empty(n, 0, dtype=dtype, device=device)
    start = v0[:, None] if v0.ndim == 1 else v0
    if start.ndim != 2 or start.shape[0] != n:
        raise ValueError(f"v0 must have shape ({n},) or ({n}, j), got {tuple(v0.shape)}")
    if not torch.isfinite(start).all():
        raise ValueError("v0 holds NaN or Inf")
    return start[:, : max(b, min(start.shape[1], n // 2))].to(dtype=dtype, device=device)


def _orthonormal_block(
    W: Tensor, basis: Tensor, width: int, scale: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """An orthonormal n x width block Q orthogonal to `basis` that spans what it can of `W`.

    Directions of `W` at rounding level relative to `scale` are dropped, and what `W` lacks (an
    invariant subspace was found, or too few start vectors were given) is filled with random
    vectors, so the block keeps its width and the search its reach.
    """
    n = basis.shape[0]
    eps = torch.finfo(W.dtype).eps
    Q = W[:, :0]
    if W.shape[1]:
        U, S, _ = torch.linalg.svd(project_out(W, basis), full_matrices=False)
        strong = 100 * eps * scale < S
        Q = U[:, strong][:, :width]
        if Q.shape[1] and S[strong].min() < math.sqrt(eps) * scale:
            # A weak direction is mostly rounding: its normalisation amplifies the rounding's
            # components along the basis, so orthogonalise it again.
            Q = torch.linalg.qr(project_out(Q, basis)).Q
    missing = width - Q.shape[1]
    if missing:
        noise = torch.randn(n, missing, generator=generator, dtype=torch.float64)
        fill = project_out(noise.to(dtype=W.dtype, device=W.device), torch.cat([basis, Q], 1))
        Q = torch.cat([Q, torch.linalg.qr(fill).Q], 1)
    return Q


def _check_symmetric(observed: Tensor, expected: Tensor, anorm: float) -> None:
    """V^T (A X) equals (A V)^T X for a symmetric A: a check from products already paid for.

    The tolerance is relative to ||A|| with an absolute floor of 100 eps, because products of a
    nearly zero operator carry rounding of the size of its inputs, not of its tiny outputs."""
    eps = torch.finfo(observed.dtype).eps
    scale = max(anorm, expected.abs().max().item(), observed.abs().max().item())
    mismatch = (observed - expected).abs().max().item()
    if mismatch > 10 * math.sqrt(eps) * scale + 100 * eps:
        raise ValueError(
            f"the operator is not symmetric: x^T A y and y^T A x differ by {mismatch:.3g} "
            f"(relative to ||A|| ~ {scale:.3g}: {mismatch / scale:.3g})"
        )


def _fix_signs(vectors: Tensor) -> Tensor:
    """Make each vector's largest-magnitude entry positive, so results are reproducible."""
    pivots = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors[pivots, torch.arange(vectors.shape[1])])
    return vectors * torch.where(signs == 0, 1.0, signs).to(vectors.dtype)
