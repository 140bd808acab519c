"""The tree MDP against brute force: exact return, start, minima and the solution count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits
from torch.func import grad, hessian

from ridgerider.problems.base import Problem
from ridgerider.problems.tree_mdp import GAP_RANGE, GAP_SCALE, TreeMDP, tree_mdp


def random_theta(tree: TreeMDP, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(tree.states, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi


def path_return(tree: TreeMDP, theta: torch.Tensor) -> float:
    """J by enumerating every leaf and walking its path state by state (no vectorisation)."""
    p_right = [(1 + math.sin(t)) / 2 for t in theta.tolist()]
    total = 0.0
    for leaf in range(tree.leaves):
        probability, state = 1.0, 0
        for level in range(tree.depth):
            right = (leaf >> (tree.depth - 1 - level)) & 1
            probability *= p_right[state] if right else 1 - p_right[state]
            state = 2 * state + 1 + right  # heap order: children of s are 2s+1, 2s+2
        total += probability * tree.rewards[leaf].item()
    return total


def polish(loss, theta: torch.Tensor) -> torch.Tensor:
    """L-BFGS to a minimum, then Newton steps to gradient 1e-12."""

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.as_tensor(x).requires_grad_()
        value = loss(point)
        (gradient,) = torch.autograd.grad(value, point)
        return value.item(), gradient.numpy()

    options = {"gtol": 1e-10, "maxiter": 10_000}
    with threadpool_limits(1, user_api="blas"):
        x = minimize(value_and_grad, theta.numpy(), jac=True, method="L-BFGS-B", options=options).x
    theta = torch.as_tensor(x)
    for _ in range(20):
        gradient = grad(loss)(theta)
        if gradient.norm() < 1e-12:
            break
        theta = theta - torch.linalg.solve(hessian(loss)(theta), gradient)
    return theta


@pytest.mark.parametrize(("depth", "seed"), [(4, 1), (5, 3), (6, 2)])
def test_return_matches_path_enumeration(depth, seed):
    tree = TreeMDP.build(depth, seed)
    for draw in range(3):
        theta = random_theta(tree, draw)
        assert tree.expected_return(theta).item() == pytest.approx(
            path_return(tree, theta), abs=1e-14
        )
        assert tree.leaf_probabilities(theta).sum().item() == pytest.approx(1.0, abs=1e-14)
    assert tree.expected_return(tree.start).item() == pytest.approx(
        path_return(tree, tree.start), abs=1e-14
    )


def test_return_matches_monte_carlo_rollouts():
    tree = TreeMDP.build(5, 4)
    theta = random_theta(tree, 11)
    p_right = tree.policy(theta)
    generator = torch.Generator().manual_seed(0)
    episodes = 200_000
    leaf = torch.zeros(episodes, dtype=torch.int64)
    for level in range(tree.depth):
        state = 2**level - 1 + leaf
        right = torch.rand(episodes, generator=generator, dtype=torch.float64) < p_right[state]
        leaf = 2 * leaf + right.long()
    rewards = tree.rewards[leaf]
    error = rewards.std().item() / math.sqrt(episodes)
    assert abs(rewards.mean().item() - tree.expected_return(theta).item()) < 4 * error


@pytest.mark.parametrize("depth", range(4, 11))
def test_start_is_an_exact_critical_point_and_a_saddle(depth):
    for seed in range(3 if depth < 9 else 1):
        tree = TreeMDP.build(depth, seed)
        assert grad(tree.loss)(tree.start).norm().item() <= 1e-10
        upper = 2 ** (depth - 1) - 1
        assert torch.equal(tree.start[:upper], torch.zeros(upper, dtype=torch.float64))
        assert tree.start_index() >= 2 ** (depth - 2) - 1

        # every subtree is worth the same at the start: dJ/dp vanishes at every upper state
        def return_of_p(p, tree=tree):
            probs = torch.ones(1, dtype=torch.float64)
            for level in range(tree.depth):
                q = p[2**level - 1 : 2 ** (level + 1) - 1]
                probs = torch.stack([probs * (1 - q), probs * q], -1).reshape(-1)
            return probs @ tree.rewards

        slopes = grad(return_of_p)(tree.policy(tree.start))
        assert slopes[:upper].abs().max().item() < 1e-14


def test_start_spectrum_known_answer():
    tree = TreeMDP.build(6, 0)
    assert tree.entropy == 2.0**-5
    assert tree.start_index() == 18
    spectrum = torch.linalg.eigvalsh(hessian(tree.loss)(tree.start))
    assert spectrum[0].item() == pytest.approx(-0.058617, abs=1e-6)
    assert spectrum[-1].item() == pytest.approx(0.106302, abs=1e-6)


@pytest.mark.parametrize(("depth", "seed"), [(4, 0), (4, 2), (5, 1)])
def test_deterministic_points_have_the_known_diagonal_hessian(depth, seed):
    tree = TreeMDP.build(depth, seed)
    for leaf in range(tree.leaves):
        theta = tree.deterministic_point(leaf)
        assert tree.greedy_leaf(theta) == leaf
        assert tree.expected_return(theta).item() == tree.rewards[leaf].item()
        assert grad(tree.loss)(theta).norm().item() < 1e-14
        expected = torch.full((tree.states,), tree.entropy, dtype=torch.float64)
        path = [2**level - 1 + (leaf >> (depth - level)) for level in range(depth)]
        expected[path] = tree.advantages(leaf) / 2 - tree.entropy
        assert torch.allclose(hessian(tree.loss)(theta), torch.diag(expected), atol=1e-14)


@pytest.mark.parametrize(("depth", "seed"), [(4, 1), (4, 5), (5, 2)])
def test_solution_count_against_brute_force(depth, seed):
    tree = TreeMDP.build(depth, seed)
    # 1. Every leaf's deterministic point, its Hessian's spectrum by brute force.
    strict = {
        leaf
        for leaf in range(tree.leaves)
        if torch.linalg.eigvalsh(hessian(tree.loss)(tree.deterministic_point(leaf)))[0] > 0
    }
    assert strict == set(tree.minimum_leaves())
    positive = {leaf for leaf in range(tree.leaves) if tree.rewards[leaf] > 0}
    assert set(tree.solutions()) == positive
    assert positive <= strict  # every positive-reward leaf is a strict minimum
    # 2. Polishing a perturbed deterministic point returns to that leaf (strict minima).
    generator = torch.Generator().manual_seed(seed)
    for leaf in sorted(strict)[:4]:
        noise = 0.05 * torch.randn(tree.states, generator=generator, dtype=torch.float64)
        theta = polish(tree.loss, tree.deterministic_point(leaf) + noise)
        assert tree.greedy_leaf(theta) == leaf
        assert tree.behaviour(theta)["leaf_probability"] == pytest.approx(1.0, abs=1e-12)
    # 3. Minima reached from random points: the greedy leaf is always a winner, and every
    # positive greedy leaf is a solution (mixed minima included).
    winners, minima = set(tree.winners.tolist()), 0
    for draw in range(12):
        theta = polish(tree.loss, random_theta(tree, 100 + draw))
        assert grad(tree.loss)(theta).norm().item() < 1e-10
        if torch.linalg.eigvalsh(hessian(tree.loss)(theta))[0] <= 1e-9:
            continue  # a saddle L-BFGS stopped on; rare
        minima += 1
        leaf = tree.greedy_leaf(theta)
        assert leaf in winners
        assert (tree.rewards[leaf] > 0) == (leaf in tree.solutions())
    assert minima >= 10


def test_solution_counts_known_answers():
    counts = {(d, s): len(TreeMDP.build(d, s).solutions()) for d in (4, 6, 8) for s in (0, 1)}
    assert counts == {(4, 0): 8, (4, 1): 8, (6, 0): 32, (6, 1): 32, (8, 0): 128, (8, 1): 128}
    assert TreeMDP.build(4, 0).solutions() == (0, 2, 5, 7, 9, 10, 13, 14)


def test_reward_law():
    tree = TreeMDP.build(5, 7)
    pairs = tree.rewards.view(-1, 2)
    gaps = (pairs[:, 0] - pairs[:, 1]).abs()
    assert gaps.min() >= GAP_SCALE * GAP_RANGE[0] - 1e-12
    assert gaps.max() <= GAP_SCALE * GAP_RANGE[1] + 1e-12
    losers = pairs.min(1).values
    assert (losers < -2 * tree.entropy).all()  # every positive leaf sits beside a negative one
    assert torch.equal(TreeMDP.build(5, 7).rewards, tree.rewards)
    assert not torch.equal(TreeMDP.build(5, 8).rewards, tree.rewards)
    assert tree.rewards.dtype == torch.float64


def test_behaviour_metrics():
    tree = TreeMDP.build(4, 0)
    leaf = tree.solutions()[0]
    metrics = tree.behaviour(tree.deterministic_point(leaf))
    assert metrics == {
        "leaf": float(leaf),
        "reward": tree.rewards[leaf].item(),
        "return": tree.rewards[leaf].item(),
        "leaf_probability": 1.0,
        "solution": 1.0,
    }
    at_start = tree.behaviour(tree.start)
    assert at_start["return"] == pytest.approx(tree.expected_return(tree.start).item(), abs=0)
    assert at_start["leaf_probability"] < 0.5


def test_problem_and_align():
    problem = tree_mdp(depth=5, seed=3)
    assert isinstance(problem, Problem)
    assert problem.name == "tree-mdp-d5-s3"
    assert problem.dim == 31 and problem.zero_modes == 0
    assert problem.start.dtype == torch.float64
    tree = TreeMDP.build(5, 3)
    theta = random_theta(tree, 5)
    mask = torch.arange(tree.states) % 3 == 0
    copy = torch.where(mask, math.pi - theta, theta + 4 * math.pi)
    assert problem.loss(copy).item() == pytest.approx(problem.loss(theta).item(), abs=1e-13)
    assert torch.allclose(problem.align(theta, copy), theta, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"depth": 3}, "depth"),
        ({"depth": 11}, "depth"),
        ({"depth": 4.0}, "depth"),
        ({"depth": True}, "depth"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**59}, "seed"),
        ({"entropy": 0.0}, "entropy"),
        ({"entropy": -0.1}, "entropy"),
        ({"entropy": 1.5}, "entropy"),
        ({"entropy": float("nan")}, "entropy"),
        ({"depth": 6, "entropy": 0.001}, "entropy"),  # the start would be a minimum
    ],
)
def test_bad_parameters_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tree_mdp(**kwargs)
