"""The tree MDP's closed-form derivatives against autograd's, at random points, deterministic
policies and the start, for several depths and seeds; and the engine taking them."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian

from ridgerider.lbfgs import lbfgs
from ridgerider.linalg import gradient_and_hessian
from ridgerider.linalg.exact import exact_derivatives
from ridgerider.problems.tree_mdp import TreeMDP


def points(tree: TreeMDP, seed: int) -> list[torch.Tensor]:
    """Random parameters, a deterministic policy (every state at +-pi/2, where path factors
    vanish) and the start."""
    generator = torch.Generator().manual_seed(seed)
    uniform = (torch.rand(tree.states, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    signs = torch.randint(0, 2, (tree.states,), generator=generator) * 2 - 1
    return [uniform, signs.to(torch.float64) * math.pi / 2, tree.start.clone()]


@pytest.mark.parametrize(("depth", "seed"), [(4, 0), (5, 3), (6, 11), (7, 100)])
def test_closed_form_derivatives_match_autograd(depth: int, seed: int) -> None:
    tree = TreeMDP.build(depth, seed)
    loss = tree.problem().loss
    assert exact_derivatives(loss) is loss
    for theta in points(tree, seed):
        value, gradient = loss.value_and_gradient(theta)
        closed_gradient, closed_hessian = loss.gradient_and_hessian(theta)
        assert value.shape == () and value.dtype == gradient.dtype == torch.float64
        assert value.item() == pytest.approx(tree.loss(theta).item(), abs=1e-14)
        torch.testing.assert_close(gradient, grad(tree.loss)(theta), rtol=0, atol=1e-14)
        torch.testing.assert_close(closed_gradient, gradient, rtol=0, atol=1e-15)
        torch.testing.assert_close(closed_hessian, hessian(tree.loss)(theta), rtol=0, atol=1e-14)
        assert torch.equal(closed_hessian, closed_hessian.T)


def test_a_batch_of_points_gets_each_points_gradient() -> None:
    tree = TreeMDP.build(5, 2)
    loss = tree.problem().loss
    batch = torch.stack(points(tree, 2))
    values, gradients = loss.value_and_gradient(batch)
    assert values.shape == (len(batch),) and gradients.shape == batch.shape
    for theta, value, gradient in zip(batch, values, gradients, strict=True):
        one_value, one_gradient = loss.value_and_gradient(theta)
        assert value.item() == pytest.approx(one_value.item(), abs=1e-14)  # SIMD lanes, sums
        torch.testing.assert_close(gradient, one_gradient, rtol=0, atol=1e-14)


def test_the_engine_takes_a_losss_exact_derivatives() -> None:
    """`gradient_and_hessian` and `lbfgs` answer from the closed form (a loss that carries
    derivatives disagreeing with its value shows which was called)."""
    tree = TreeMDP.build(4, 0)
    exact = tree.problem().loss

    class Shifted:
        def __call__(self, theta: torch.Tensor) -> torch.Tensor:
            return exact(theta)

        def value_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value, gradient = exact.value_and_gradient(theta)
            return value - 0.01 * theta.sum(-1), gradient - 0.01  # tilted by -0.01 * sum(theta)

        def gradient_and_hessian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            gradient, hessian = exact.gradient_and_hessian(theta)
            return gradient, 2 * hessian

    theta = points(tree, 0)[0]
    _, doubled = gradient_and_hessian(Shifted(), theta)
    torch.testing.assert_close(doubled, 2 * hessian(tree.loss)(theta), rtol=0, atol=1e-13)
    tilted, _ = lbfgs(Shifted(), tree.start, gradient_tol=1e-10, max_iterations=5000)
    assert grad(tree.loss)(tilted).sub(0.01).abs().max().item() < 1e-9
