"""The classic functions' closed-form derivatives against autograd's, and their minima."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian

from ridgerider.linalg.exact import exact_derivatives
from ridgerider.problems.classic import himmelblau, styblinski_tang


@pytest.mark.parametrize("problem", [himmelblau(), styblinski_tang(1), styblinski_tang(5)])
def test_closed_form_derivatives_match_autograd(problem) -> None:
    loss = exact_derivatives(problem.loss)
    assert loss is not None
    generator = torch.Generator().manual_seed(problem.dim)
    batch = (torch.rand(6, problem.dim, generator=generator, dtype=torch.float64) * 2 - 1) * 5
    batch[0] = problem.start
    values, gradients = loss.value_and_gradient(batch)
    for theta, value, gradient in zip(batch, values, gradients, strict=True):
        g, h = loss.gradient_and_hessian(theta)
        assert value.item() == pytest.approx(loss(theta).item(), rel=1e-14, abs=1e-12)
        torch.testing.assert_close(gradient, grad(loss)(theta), rtol=1e-13, atol=1e-12)
        torch.testing.assert_close(g, gradient, rtol=1e-15, atol=1e-13)  # batched: SIMD lanes
        torch.testing.assert_close(h, hessian(loss)(theta), rtol=1e-13, atol=1e-12)


def test_the_closed_forms_vanish_at_known_minima() -> None:
    """Himmelblau's minimum (3, 2) and Styblinski-Tang's (-2.903534, ...) (KNOWN-ANSWERS.md)."""
    g, h = himmelblau().loss.gradient_and_hessian(torch.tensor([3.0, 2.0], dtype=torch.float64))
    assert g.abs().max().item() == 0.0 and torch.linalg.eigvalsh(h).min().item() > 0
    x = torch.full((3,), -2.903534, dtype=torch.float64)
    g, h = styblinski_tang(3).loss.gradient_and_hessian(x)
    assert g.abs().max().item() < 1e-4 and torch.linalg.eigvalsh(h).min().item() > 0
