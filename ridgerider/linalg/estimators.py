"""Scalar curvature summaries on the same operators: sharpness and the Hessian trace."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ridgerider.linalg.blocks import product
from ridgerider.linalg.lanczos import eigsh
from ridgerider.linalg.operators import LinearOperator, as_operator


def top_eigenvalue(
    op: LinearOperator | Tensor, *, tol: float | None = None, seed: int = 0
) -> float:
    """The largest eigenvalue (the sharpness of a minimum), by Lanczos.

    Raises:
        ConvergenceWarning (a warning): if it did not converge within the default budget.
    """
    return eigsh(op, 1, "LA", tol=tol, seed=seed).eigenvalues[0].item()


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson trace estimate: `value` +- `stderr` (one standard error), `matvecs` spent."""

    value: float
    stderr: float
    matvecs: int


def hutchinson_trace(
    op: LinearOperator | Tensor, *, samples: int = 64, block_size: int = 16, seed: int = 0
) -> TraceEstimate:
    """Unbiased trace estimate E[z^T A z] with Rademacher z, in blocks of products.

    Args:
        op: a symmetric operator or tensor.
        samples: number of probe vectors (>= 2, for a standard error).
        block_size: probes per batched product.
        seed: seeds the probes (drawn on the CPU, so every device gives the same estimate).

    Raises:
        ValueError: if `samples` < 2 or `block_size` < 1.
    """
    if not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    A = as_operator(op)
    n = A.shape[0]
    generator = torch.Generator().manual_seed(seed)
    quadratic_forms: list[Tensor] = []
    done = 0
    while done < samples:
        width = min(block_size, samples - done)
        Z = torch.randint(0, 2, (n, width), generator=generator).to(torch.float64) * 2 - 1
        Z = Z.to(dtype=A.dtype, device=A.device)
        quadratic_forms.append((Z * product(A, Z, done)).sum(0).to(torch.float64).cpu())
        done += width
    values = torch.cat(quadratic_forms)
    return TraceEstimate(values.mean().item(), values.std().item() / math.sqrt(samples), samples)
