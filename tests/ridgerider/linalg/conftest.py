"""Shared known-answer operators for the linear-algebra tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split


def planted_matrix(
    n: int, negative_end: list[float], dtype: torch.dtype = torch.float64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric matrix whose smallest eigenvalues are exactly `negative_end`.

    The rest of the spectrum is spread over [0, 10]. Returns the matrix and its eigenvalues
    (ascending, float64).
    """
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    rest = torch.linspace(0.0, 10.0, n - len(negative_end), dtype=torch.float64)
    spectrum = torch.cat([torch.tensor(negative_end, dtype=torch.float64), rest]).sort().values
    A = (Q * spectrum) @ Q.T
    return ((A + A.T) / 2).to(dtype), spectrum


class MatvecOperator:
    """An operator known only through a matvec function (no `matmat`, no matrix)."""

    def __init__(self, n: int, matvec: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.shape = (n, n)
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        self.matvec = matvec


# Exact repeats (5 and 3 copies) and a tight cluster (3 copies 1e-9 apart) at the negative end.
CLUSTERED = [-2.0] * 5 + [-1.5] * 3 + [-1.2, -1.2 + 1e-9, -1.2 + 2e-9] + [-0.9]


@pytest.fixture(scope="session")
def digits():
    return digits_split(dtype=torch.float64)


@pytest.fixture(scope="session")
def digits_h6(digits):
    """A 64-6-10 tanh MLP on digits: (loss of a flat float64 vector, its size)."""
    model = digits_mlp(6)
    return digits_loss(model, digits), sum(p.numel() for p in model.parameters())
