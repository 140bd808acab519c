"""Sharpness and Hutchinson trace against dense answers."""

from __future__ import annotations

import pytest
import torch

from ridgerider.linalg import HessianOperator, hutchinson_trace, top_eigenvalue
from tests.ridgerider.linalg.conftest import CLUSTERED, planted_matrix


def test_top_eigenvalue_is_the_largest(digits_h6):
    loss, n = digits_h6
    theta = 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))[-1].item()
    assert top_eigenvalue(HessianOperator(loss, theta)) == pytest.approx(expected, rel=1e-8)


def test_hutchinson_is_exact_on_a_diagonal_and_unbiased_on_a_dense_matrix():
    diagonal = torch.diag(torch.linspace(-1.0, 3.0, 50, dtype=torch.float64))
    exact = hutchinson_trace(diagonal, samples=8)
    assert exact.value == pytest.approx(diagonal.trace().item(), abs=1e-12)
    assert exact.stderr == pytest.approx(0.0, abs=1e-12)

    A, spectrum = planted_matrix(120, CLUSTERED)
    estimate = hutchinson_trace(A, samples=400, block_size=64)
    assert estimate.matvecs == 400
    assert 0 < estimate.stderr < 0.1 * abs(spectrum.sum().item())
    assert abs(estimate.value - spectrum.sum().item()) < 4 * estimate.stderr


def test_hutchinson_rejects_bad_sample_counts():
    with pytest.raises(ValueError, match="samples must be an integer >= 2"):
        hutchinson_trace(torch.eye(3), samples=1)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        hutchinson_trace(torch.eye(3), block_size=0)
