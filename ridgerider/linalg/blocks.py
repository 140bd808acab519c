"""What eigsh, ridge tracking and the estimators share: operator products on a block of
vectors (checked finite) and orthogonalisation against a basis."""

from __future__ import annotations

import torch
from torch import Tensor

from ridgerider.linalg.operators import LinearOperator

# Operators up to this size are solved exactly from one block of n products (the tree MDP, the
# lever game): cheaper than Lanczos's few blocks, whose per-block overhead dominates there.
WHOLE_SPACE_SIZE = 128


class NonFiniteProductError(FloatingPointError):
    """An operator product returned NaN or Inf."""


def product(A: LinearOperator, X: Tensor, done: int) -> Tensor:
    """A @ X through `matmat` when the operator has one, with a finiteness check."""
    matmat = getattr(A, "matmat", None)
    AX = matmat(X) if matmat else torch.stack([A.matvec(x) for x in X.unbind(1)], dim=1)
    finite = torch.isfinite(AX).all(dim=0)
    if not finite.all():
        first = int((~finite).nonzero()[0]) + done + 1
        raise NonFiniteProductError(
            f"operator product #{first} returned NaN or Inf (products are numbered from 1)"
        )
    return AX


def whole_matrix(A: LinearOperator) -> Tensor:
    """A tiny operator as a matrix: its `dense()` when it has one (a Hessian's is one batched
    backward pass), else its products with the identity; checked finite."""
    dense = getattr(A, "dense", None)
    if dense is None:
        return product(A, torch.eye(A.shape[0], dtype=A.dtype, device=A.device), 0)
    matrix = dense()
    if not torch.isfinite(matrix).all():
        raise NonFiniteProductError("the operator's whole matrix holds NaN or Inf")
    return matrix


def project_out(W: Tensor, basis: Tensor) -> Tensor:
    """W minus its projection on the orthonormal `basis`, twice (classical Gram-Schmidt x 2)."""
    for _ in range(2):
        W = W - basis @ (basis.T @ W)
    return W
