"""A loss scaled far down: the engine's units (`scale`), known answers at any scale."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ridgerider.critical import classify
from ridgerider.linalg import gradient_and_hessian
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search
from ridgerider.search.scale import RESCALE_BELOW, ScaledExactLoss, loss_scale
from ridgerider.search.steps import DEGENERATE_START
from tests.known_answers import HIMMELBLAU_MINIMA
from tests.problems import far_down


@pytest.mark.parametrize(
    ("norm", "scale"),
    [(100.0, 1.0), (RESCALE_BELOW, 1.0), (RESCALE_BELOW * 0.99, 64.0), (1e-3, 1024.0), (0.0, 1.0)],
)
def test_the_loss_is_rescaled_only_below_the_threshold_and_to_a_curvature_of_one_to_two(
    norm, scale
):
    root = classify(lambda theta: (theta**2).sum(), torch.zeros(1, dtype=torch.float64))
    assert loss_scale(replace(root, norm_estimate=norm)) == scale
    assert scale == 1.0 or 1 <= norm * scale < 2
    assert loss_scale(replace(root, norm_estimate=norm, loss=1e10)) == 1.0  # beyond resolution


def test_curvature_the_losss_values_cannot_resolve_is_no_ridge_at_any_scale():
    """1 + 1e-20 (x^2 - y^2) rounds to 1 everywhere: its start stays degenerate, not a saddle
    whose rides see a constant loss."""
    problem = Problem(
        "unresolved",
        lambda theta: 1 + 1e-20 * (theta[0] ** 2 - theta[1] ** 2),
        2,
        torch.zeros(2, dtype=torch.float64),
    )
    result = search(problem)
    assert result.stopped == DEGENERATE_START and result.graph.number_of_nodes() == 1


def test_a_scaled_exact_loss_scales_the_derivatives_it_carries_as_autograd_does():
    loss = load("tree-mdp:depth=4,seed=3").loss
    scaled = ScaledExactLoss(loss, 2.0**-20)
    theta = torch.linspace(-1, 1, 15, dtype=torch.float64)
    value, gradient = scaled.value_and_gradient(theta)
    exact_gradient, hessian = scaled.gradient_and_hessian(theta)
    assert value.item() == loss.value_and_gradient(theta)[0].item() * 2.0**-20
    assert scaled(theta).item() == loss(theta).item() * 2.0**-20
    torch.testing.assert_close(value, scaled(theta), rtol=1e-12, atol=0)
    torch.testing.assert_close(gradient, torch.func.grad(scaled)(theta), rtol=1e-12, atol=0)
    torch.testing.assert_close(exact_gradient, gradient, rtol=1e-12, atol=0)
    torch.testing.assert_close(hessian, torch.func.hessian(scaled)(theta), rtol=1e-10, atol=0)


def test_himmelblau_scaled_down_by_2_to_the_40_keeps_its_four_minima_in_the_users_units():
    problem = far_down("himmelblau", -40)
    result = search(problem, SearchSpec())  # was a "degenerate start": no point at all
    assert result.stopped == "frontier exhausted"
    minima = result.points("minimum")
    assert len(minima) == 4
    for expected in HIMMELBLAU_MINIMA:
        assert min((p.theta - expected).norm().item() for p in minima) < 1e-6
    for point in result.points():
        assert point.loss == problem.loss(point.theta).item()
        assert point.norm_estimate < 1e-9  # ||H|| as the user's loss has it, not the engine's


def test_losses_scaled_by_powers_of_two_below_the_threshold_give_one_tree_bit_for_bit():
    trees = [search(far_down("styblinski-tang:dim=3", power), SearchSpec()) for power in (-30, -40)]
    first, second = (tree.graph for tree in trees)
    assert len(trees[0].points("minimum")) == 8
    assert first.number_of_nodes() == second.number_of_nodes()
    assert sorted(first.edges()) == sorted(second.edges())
    for node in first.nodes:
        a, b = first.nodes[node]["point"], second.nodes[node]["point"]
        assert torch.equal(a.theta, b.theta) and a.kind == b.kind and a.index == b.index
        assert a.loss == b.loss * 2.0**10
        assert torch.equal(a.eigenvalues, b.eigenvalues * 2.0**10)


def deep_linear_network(power: int) -> Problem:
    """0.5 ||Y - W2 W1 X||^2 / N times 2**`power`, 10-7-10 (140 parameters, above the dense
    path), from zero: every minimum is global (Baldi and Hornik 1989)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(10, 30, dtype=torch.float64, generator=generator)
    targets = torch.randn(10, 10, dtype=torch.float64, generator=generator) @ inputs

    def loss(theta: torch.Tensor) -> torch.Tensor:
        first, second = theta[:70].reshape(7, 10), theta[70:].reshape(10, 7)
        residual = targets - second @ first @ inputs
        return 0.5 * 2.0**power * residual.square().sum() / inputs.shape[1]

    return Problem("deep-linear", loss, 140, torch.zeros(140, dtype=torch.float64))


def test_a_network_scaled_far_down_returns_minima_not_saddles():
    problem = deep_linear_network(-16)
    result = search(problem, SearchSpec(max_nodes=8))
    minima = result.points("minimum")
    assert len(minima) >= 5  # 2 before, both saddles, and 5 points called degenerate
    for point in minima:
        _, hessian = gradient_and_hessian(problem.loss, point.theta)
        values = torch.linalg.eigvalsh(hessian)
        assert values[0] >= -1e-6 * values.abs().max()
    losses = [point.loss for point in minima]
    assert max(losses) - min(losses) <= 1e-6 * max(losses)  # all global
    assert not result.failures


def test_a_failure_in_a_rescaled_search_says_its_figures_are_in_the_engines_units():
    """The western rides of Himmelblau x 2^-40 hit NaN: they fail as they do at scale 1, the
    job goes on, and each failure names the units its steps ran in (Himmelblau's start has
    ||H|| 20 to 32, so the engine takes the loss times 2^35), which are not the user's."""
    at_one = search(far_down("tests.problems:western_nan", 0), SearchSpec())
    result = search(far_down("tests.problems:western_nan"), SearchSpec())
    suffix = " (in the engine's units: the loss times 2^35)"
    assert at_one.failures
    assert [f.failure + suffix for f in at_one.failures] == [f.failure for f in result.failures]
    assert len(result.points("minimum")) == len(at_one.points("minimum")) == 2
