"""The lever game: payoffs, relabelling, cross-play, and the start's eigenstructure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits
from torch.func import grad, hessian

from ridgerider.problems.base import Problem
from ridgerider.problems.lever_game import (
    LeverGame,
    cross_play,
    lever_game,
    relabelling,
    true_payoffs,
)
from ridgerider.search import SearchSpec, search


def descend(loss, theta: torch.Tensor) -> torch.Tensor:
    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.as_tensor(x).requires_grad_()
        value = loss(point)
        (gradient,) = torch.autograd.grad(value, point)
        return value.item(), gradient.numpy()

    with threadpool_limits(1, user_api="blas"):
        options = {"gtol": 1e-10, "maxiter": 5_000}
        x = minimize(value_and_grad, theta.numpy(), jac=True, method="L-BFGS-B", options=options).x
    return torch.as_tensor(x)


def policy_on_true_lever(levers: int, seed: int, true_lever: int) -> torch.Tensor:
    game = LeverGame.build(levers, seed)
    return game.pure_point(game.seen_label(true_lever))


@pytest.mark.parametrize(("levers", "seed"), [(8, 0), (3, 4), (10, 9)])
def test_pure_strategy_payoff_matrix(levers, seed):
    game = LeverGame.build(levers, seed)
    n = game.count
    matrix = torch.tensor(
        [[game.expected_payoff(game.pure_point(i, j)).item() for j in range(n)] for i in range(n)],
        dtype=torch.float64,
    )
    assert torch.equal(matrix, torch.diag(game.payoffs))
    # in true labels: diagonal [1.0] * levers + [0.8, 0.8, 0.6], zero elsewhere
    order = [game.seen_label(t) for t in range(n)]
    assert torch.equal(matrix[order][:, order], torch.diag(true_payoffs(levers)))


def test_payoff_of_mixed_strategies_matches_sampling():
    game = LeverGame.build(8, 2)
    generator = torch.Generator().manual_seed(0)
    theta = torch.rand(2 * game.count, generator=generator, dtype=torch.float64) + 0.1
    pi_a, pi_b = game.strategies(theta)
    draws = 200_000
    a = torch.multinomial(pi_a, draws, replacement=True, generator=generator)
    b = torch.multinomial(pi_b, draws, replacement=True, generator=generator)
    paid = torch.where(a == b, game.payoffs[a], torch.zeros(draws, dtype=torch.float64))
    error = paid.std().item() / math.sqrt(draws)
    assert abs(paid.mean().item() - game.expected_payoff(theta).item()) < 4 * error


def test_relabelling_is_a_seeded_permutation():
    game = LeverGame.build(8, 3)
    assert sorted(game.permutation.tolist()) == list(range(11))
    assert torch.equal(game.permutation, relabelling(3, 11))
    assert torch.equal(game.payoffs, true_payoffs(8)[game.permutation])
    assert not torch.equal(relabelling(3, 11), relabelling(4, 11))
    for seen in range(11):
        metrics = game.behaviour(game.pure_point(seen))
        assert metrics["lever"] == game.permutation[seen].item()
        assert metrics["payoff"] == true_payoffs(8)[game.permutation[seen]].item()


def test_cross_play_of_the_unique_levers_and_self_play():
    levers = 8
    for seed_a in range(6):
        for seed_b in range(6):
            theta_a = policy_on_true_lever(levers, seed_a, levers + 2)  # the 0.6 lever
            theta_b = policy_on_true_lever(levers, seed_b, levers + 2)
            assert cross_play(theta_a, seed_a, theta_b, seed_b) == pytest.approx(0.6, abs=1e-15)
    game = LeverGame.build(levers, 5)
    theta = torch.rand(2 * game.count, generator=torch.Generator().manual_seed(1)) + 0.1
    theta = theta.double()
    assert cross_play(theta, 5, theta, 5) == pytest.approx(game.expected_payoff(theta).item())
    uniform = torch.ones(2 * game.count, dtype=torch.float64)
    expected = true_payoffs(levers).sum().item() / game.count**2
    assert cross_play(uniform, 1, uniform, 2) == pytest.approx(expected, abs=1e-15)


def lowest_seen_label(seed: int, count: int, members) -> int:
    permutation = relabelling(seed, count)
    return min(int(torch.nonzero(permutation == member)[0, 0]) for member in members)


@pytest.mark.parametrize("levers", [4, 8, 10])
def test_cross_play_of_arbitrary_choices_averages_one_over_k_and_two_fifths(levers):
    """Each run plays the lowest SEEN label among the 1.0 levers (or the 0.8 pair): in true
    labels that is a uniformly random 1.0 lever, so cross-play averages 1/k (0.8/2 = 0.4)."""
    runs, count = 300, levers + 3
    for members, payoff, expected in (
        (range(levers), 1.0, 1 / levers),
        ((levers, levers + 1), 0.8, 0.4),
    ):
        seen = [lowest_seen_label(seed, count, members) for seed in range(runs)]
        chosen = [relabelling(seed, count)[seen[seed]].item() for seed in range(runs)]
        values = []
        for a in range(0, runs, 7):
            for b in range(0, runs, 11):
                if a == b:
                    continue
                theta_a = torch.zeros(2 * count, dtype=torch.float64)
                theta_b = torch.zeros(2 * count, dtype=torch.float64)
                theta_a[seen[a]] = 1.0
                theta_b[count + seen[b]] = 1.0
                value = cross_play(theta_a, a, theta_b, b)
                assert value == (payoff if chosen[a] == chosen[b] else 0.0)
                values.append(value)
        assert np.mean(values) == pytest.approx(expected, abs=0.35 * expected)
        # the expectation over all pairs of the 300 runs, from how often each lever was chosen
        counts = np.bincount(chosen, minlength=count)
        same = (np.sum(counts**2) - runs) / (runs * (runs - 1))
        assert payoff * same == pytest.approx(expected, abs=0.2 * expected)


def test_start_is_critical_symmetric_and_has_the_paper_eigenstructure():
    game = LeverGame.build(8, 0)
    assert grad(game.loss)(game.start).norm().item() <= 1e-10
    n = game.count
    assert torch.equal(game.start[:n], game.start[n:])  # both players play the same
    pi = game.strategies(game.start)[0]
    true_pi = pi[torch.argsort(game.permutation)]
    assert torch.allclose(true_pi[:8], true_pi[0].expand(8), rtol=0, atol=1e-15)
    assert true_pi[0] < true_pi[8] < true_pi[10]  # the lower the payoff, the more weight
    structure = game.start_structure()
    multiplicities = [m for _, m, _, _ in structure]
    assert sorted(multiplicities) == [1] * 6 + [2] + [7, 7]
    negative = [(v, m, kind, shares) for v, m, kind, shares in structure if v < 0]
    assert sum(m for _, m, _, _ in negative) == n - 1  # every coordinated direction is a ridge
    assert all(kind == "A+B" for _, _, kind, _ in negative)
    known = [
        (-0.260485, 1, "0.6"),
        (-0.243140, 1, "0.8"),
        (-0.239294, 1, "0.8"),
        (-0.229123, 7, "1.0"),
    ]
    for (value, mult, _, shares), (expected, expected_mult, main) in zip(
        negative, known, strict=True
    ):
        assert value == pytest.approx(expected, abs=1e-6)
        assert mult == expected_mult
        assert max(shares, key=shares.get) == main
    assert negative[1][3]["0.8"] == pytest.approx(1.0, abs=1e-12)  # the 0.8 pair's difference
    assert negative[3][3]["1.0"] == pytest.approx(1.0, abs=1e-12)  # among the 1.0 levers
    assert structure[-1][:2] == (pytest.approx(2.0, abs=1e-12), 2)  # the anchored scales


def test_start_eigenvalues_do_not_depend_on_the_labels():
    first = [(round(v, 10), m) for v, m, _, _ in LeverGame.build(8, 0).start_structure()]
    other = [(round(v, 10), m) for v, m, _, _ in LeverGame.build(8, 17).start_structure()]
    assert first == other


@pytest.mark.parametrize("true_lever", [0, 8, 10])
def test_coordinated_minimum_has_the_known_hessian(true_lever):
    game = LeverGame.build(8, 6)
    theta = game.pure_point(game.seen_label(true_lever))
    payoff = true_payoffs(8)[true_lever].item()
    assert grad(game.loss)(theta).norm().item() < 1e-15
    spectrum = torch.linalg.eigvalsh(hessian(game.loss)(theta))
    expected = torch.tensor([2 * payoff - 6 * game.entropy] * 20 + [2.0, 2.0]).sort().values
    assert torch.allclose(spectrum, expected.double(), atol=1e-12)
    metrics = game.behaviour(theta)
    assert metrics["return"] == payoff and metrics["greedy_return"] == payoff
    assert metrics["coordinated"] == 1.0 and metrics["probability"] == 1.0


def test_riding_the_most_negative_ridge_reaches_the_06_lever():
    """Step along the eigenvector (each sign) and descend: one side is the 0.6 lever."""
    game = LeverGame.build(8, 2)
    _, vectors = torch.linalg.eigh(hessian(game.loss)(game.start))
    ends = []
    for sign in (1.0, -1.0):
        theta = descend(game.loss, game.start + sign * 0.3 * vectors[:, 0])
        ends.append(game.behaviour(theta))
    reached = [e for e in ends if e["lever"] == 10]
    assert len(reached) == 1
    assert reached[0]["coordinated"] == 1.0
    assert reached[0]["return"] == pytest.approx(0.6, abs=1e-8)
    # and the 0.8 pair's ridge reaches the two 0.8 levers, one per sign
    levers = set()
    for sign in (1.0, -1.0):
        theta = descend(game.loss, game.start + sign * 0.3 * vectors[:, 1])
        metrics = game.behaviour(theta)
        assert metrics["return"] == pytest.approx(0.8, abs=1e-8)
        levers.add(metrics["lever"])
    assert levers == {8.0, 9.0}


def test_the_default_search_reaches_every_lever():
    """Four interchangeable 1.0 levers share one group of equal eigenvalues at the start; they
    are four solutions, not copies of one, so the default search rides every direction of the
    group (`Problem.ridge_policy`), and its frontier exhausted, holds one minimum per lever."""
    result = search(lever_game(levers=4, seed=3), SearchSpec())
    minima = result.points("minimum")
    game = LeverGame.build(4, 3)
    levers = sorted(game.behaviour(point.theta)["lever"] for point in minima)
    assert result.stopped == "frontier exhausted"
    assert levers == [float(lever) for lever in range(7)]
    payoffs = sorted(round(-point.loss, 6) for point in minima)
    assert payoffs == pytest.approx([0.6, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0], abs=1e-3)


def test_problem_and_align():
    problem = lever_game(levers=8, seed=3)
    assert isinstance(problem, Problem)
    assert problem.name == "lever-game-8-s3"
    assert problem.dim == 22 and problem.zero_modes == 0
    assert problem.start.dtype == torch.float64
    theta = torch.rand(22, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    flipped = theta * torch.where(torch.arange(22) % 3 == 0, -1.0, 1.0).double()
    assert problem.loss(flipped).item() == pytest.approx(problem.loss(theta).item(), abs=1e-15)
    assert torch.equal(problem.align(theta, flipped), theta)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"levers": 1}, "levers"),
        ({"levers": 33}, "levers"),
        ({"levers": 8.0}, "levers"),
        ({"levers": True}, "levers"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"entropy": 0.0}, "entropy"),
        ({"entropy": 0.2}, "entropy"),
        ({"entropy": -0.01}, "entropy"),
        ({"entropy": float("inf")}, "entropy"),
        ({"entropy": 0.15}, "entropy"),  # in range, but no contested start exists
    ],
)
def test_bad_parameters_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        lever_game(**kwargs)


def test_cross_play_rejects_mismatched_games():
    with pytest.raises(ValueError, match="levers"):
        cross_play(torch.ones(22, dtype=torch.float64), 0, torch.ones(26, dtype=torch.float64), 1)
