"""Climbing from a minimum to the index-1 saddle over its basin's rim, on known answers."""

from __future__ import annotations

import pytest
import torch

from ridgerider.climb import ClimbConfig, climb, turned_off
from ridgerider.lbfgs import lbfgs
from ridgerider.linalg import HessianOperator
from ridgerider.problems.classic import himmelblau, styblinski_tang
from ridgerider.problems.tree_mdp import TreeMDP
from tests.known_answers import HIMMELBLAU_MINIMA, HIMMELBLAU_SADDLES


def _eigenvectors(loss, theta: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigh(HessianOperator(loss, theta).dense())[1]


def test_every_climb_from_himmelblaus_minima_ends_on_one_of_its_four_saddles():
    """From each of the 4 minima, up both eigenvectors both ways: every climb that finds a rim
    ends on a known saddle to 1e-5, its gradient below grad_tol, and together they reach all 4
    (each minimum borders two of them)."""
    problem = himmelblau()
    reached = set()
    for minimum in HIMMELBLAU_MINIMA:
        vectors = _eigenvectors(problem.loss, minimum)
        for index in range(2):
            for sign in (1, -1):
                end = climb(problem.loss, minimum, sign * vectors[:, index], ClimbConfig(0.3))
                if end.reason != "critical":
                    continue
                distances = (HIMMELBLAU_SADDLES - end.theta).norm(dim=1)
                assert distances.min() < 1e-5
                assert torch.func.grad(problem.loss)(end.theta).norm() <= 1e-9
                reached.add(int(distances.argmin()))
    assert reached == {0, 1, 2, 3}


def test_a_float32_climb_ends_on_the_saddle_its_rounding_lets_it_reach():
    """Himmelblau in float32: no step gets the gradient below 1e-9 there, so a climb that asked
    for it wandered on to its step budget; it now stops at the rounding floor, on the saddle."""
    problem = himmelblau()
    loss = problem.loss
    ends = []
    for minimum in HIMMELBLAU_MINIMA:
        vectors = _eigenvectors(loss, minimum)
        for sign in (1, -1):
            direction = (sign * vectors[:, 0]).float()
            ends.append(climb(loss, minimum.float(), direction, ClimbConfig(0.3, grad_tol=1e-9)))
    critical = [end for end in ends if end.reason == "critical"]
    assert len(critical) >= 4 and all(end.reason != "step-budget" for end in ends)
    for end in critical:
        assert (HIMMELBLAU_SADDLES.float() - end.theta).norm(dim=1).min() < 1e-3


@pytest.mark.parametrize("width", [1e-3, 1e-4, 1e-5])
def test_a_climb_from_a_basin_narrower_than_its_first_step_takes_that_step_shorter(width):
    """Wells 1e-3 wide, the climb's first step 0.32 (the search's): it landed on the far wall,
    the climbed curvature a hundred thousand times the minimum's, and gave up; retaken shorter,
    it reaches the saddle between the two wells. At 1e-4 a quarter-length step still crossed
    the rim and the next well and stopped on the wall beyond, where the curvature had not yet
    risen 16-fold: the loss falling along the step says so too."""

    def loss(t: torch.Tensor) -> torch.Tensor:
        return ((t / width) ** 2 - 1).square().sum()

    minimum = torch.tensor([width, width], dtype=torch.float64)
    inwards = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    end = climb(loss, minimum, inwards, ClimbConfig(0.32))
    assert end.reason == "critical"
    assert torch.allclose(end.theta, torch.tensor([0.0, width], dtype=torch.float64), atol=1e-12)


def test_a_climb_with_no_rim_ahead_says_so():
    """Styblinski-Tang (separable quartics) from its minimum at x = -2.9035 along -x: the
    curvature only grows outward, no saddle lies ahead; inward the climb reaches the 1-D
    maximum at x = 0.1567 (an index-1 saddle in 1-D)."""
    problem = styblinski_tang(dim=1)
    minimum = torch.tensor([-2.903534], dtype=torch.float64)
    outward = climb(problem.loss, minimum, torch.tensor([-1.0], dtype=torch.float64))
    inward = climb(problem.loss, minimum, torch.tensor([1.0], dtype=torch.float64))
    assert outward.reason == "curvature-rose"
    assert inward.reason == "critical"
    assert inward.theta.item() == pytest.approx(0.156731, abs=1e-5)


def test_a_climb_that_falls_back_into_a_basin_stops_there_and_is_retaken_short():
    """Himmelblau from its minimum (3, 2) up its stiff eigenvector towards (-0.92, -0.38),
    first step 0.3: the long steps pass negative curvature and land where there is none, the
    basin of (3.58, -1.85), and stop there; retaken with short steps, the climb reaches the
    saddle (-0.128, -1.954). Before, it went on from that basin to (3.8, -9.8) and gave up
    there, the curvature risen, and was not retaken."""
    problem = himmelblau()
    minimum = torch.tensor([3.0, 2.0], dtype=torch.float64)
    stiff = _eigenvectors(problem.loss, minimum)[:, 1]
    stiff = -stiff[0].sign() * stiff  # the sign eigh returns is the platform's
    end = climb(problem.loss, minimum, stiff, ClimbConfig(0.3))
    assert end.reason == "critical"
    assert (HIMMELBLAU_SADDLES - end.theta).norm(dim=1).min() < 1e-5
    assert (end.theta - torch.tensor([-0.128, -1.954], dtype=torch.float64)).norm() < 1e-3


def _saddle_above_the_rim(theta: torch.Tensor) -> torch.Tensor:
    """A double well in x whose barrier top (0, 0) has index 2 (the climb's x and y); the rim's
    index-1 saddles are beside it, at (0, +-0.25)."""
    x, y = theta[0], theta[1]
    return (x**2 - 1) ** 2 + y**2 * (x**2 - 0.5) + 4 * y**4


@pytest.mark.parametrize("offset", [0.0, 1e-13, 1e-8, 1e-6])
def test_a_climb_lands_on_a_saddle_of_higher_index_it_converges_onto(offset):
    """Up x from the minimum (-1, offset), the climb converges onto the index-2 point (0, 0)
    whatever the offset in y (the slope along y vanishes with it) and ends on it, in a few
    steps: Newton with |eigenvalue| would leave it down y only as fast as the offset doubles
    (an offset of 1e-8 took 26 steps, one of 1e-6 lost the point altogether)."""
    minimum = torch.tensor([-1.0, offset], dtype=torch.float64)
    up_x = torch.tensor([1.0, 0.0], dtype=torch.float64)
    end = climb(_saddle_above_the_rim, minimum, up_x, ClimbConfig(0.3))
    assert end.reason == "critical"
    assert end.theta.abs().max() < 1e-9
    assert end.steps <= 12


def test_climbs_from_a_tree_mdp_leaf_reach_saddles_whose_ridges_lead_to_other_paying_leaves():
    """Tree MDP depth 4 (seed 100) from its first paying leaf's minimum, up every eigenvector
    both ways: the climbs that reach a critical point reach saddles, some of index 2 or more
    (the subtree across the rim at its own maximum-entropy point), and descending both sides
    of their negative eigenvectors reaches every other paying leaf of the subtree two levels
    up (the leaf's quarter of the tree) and paying leaves beyond it."""
    tree = TreeMDP.build(4, 100)
    leaf = tree.solutions()[0]
    minimum = tree.deterministic_point(leaf)
    vectors = _eigenvectors(tree.loss, minimum)
    leaves, indices = set(), []
    for index in range(tree.states):
        for sign in (1, -1):
            end = climb(tree.loss, minimum, sign * vectors[:, index])
            if end.reason != "critical":
                continue
            hessian = HessianOperator(tree.loss, end.theta).dense()
            values, saddle_vectors = torch.linalg.eigh(hessian)
            indices.append(int((values < 0).sum()))
            for negative in range(indices[-1]):
                for side in (1, -1):
                    theta = end.theta + side * 1e-3 * saddle_vectors[:, negative]
                    theta, _ = lbfgs(tree.loss, theta, gradient_tol=1e-10, max_iterations=10_000)
                    leaves.add(tree.greedy_leaf(theta))
    assert min(indices) >= 1 and max(indices) >= 2
    paying = set(tree.solutions())
    quarter = {other for other in paying if other // 4 == leaf // 4}
    assert quarter <= leaves
    assert (paying & leaves) - quarter


def test_a_climb_that_turns_off_its_direction_onto_another_rim_ends_on_a_saddle_short_steps_avoid():
    """Tree MDP depth 5, seed 26, from leaf 1's minimum along the eigenvector of its level-2
    decision (state 3, towards the pair of leaves 5 and 6, whose states are unreached and
    uniform there): no rim lies along that decision alone, and with long steps the climb
    drifts onto the rim of an unreached state (state 3 unmoved), its end orthogonal to the
    climbed direction (`turned_off`). With short steps it ends across the decision, on a
    saddle whose descents reach leaf 5, which no other way of the search reached."""
    tree = TreeMDP.build(5, 26)
    minimum = tree.deterministic_point(1)
    vectors = _eigenvectors(tree.loss, minimum)
    direction = vectors[:, int(vectors[3].abs().argmax())]
    long_steps = climb(tree.loss, minimum, direction)
    assert long_steps.reason == "critical"
    assert turned_off(minimum, direction, long_steps.theta)
    assert torch.sin(long_steps.theta[3]) < -0.9, "the long-step climb crossed the decision"
    end = climb(tree.loss, minimum, direction, short_steps=True)
    assert end.reason == "critical"
    assert not turned_off(minimum, direction, end.theta)
    assert torch.sin(end.theta[3]) > 0.9, "the climb did not cross the level-2 decision"
    values, saddle_vectors = torch.linalg.eigh(HessianOperator(tree.loss, end.theta).dense())
    leaves = set()
    for negative in range(int((values < 0).sum())):
        for side in (1, -1):
            theta = end.theta + side * 1e-3 * saddle_vectors[:, negative]
            theta, _ = lbfgs(tree.loss, theta, gradient_tol=1e-10, max_iterations=10_000)
            leaves.add(tree.greedy_leaf(theta))
    assert 5 in leaves


def test_a_climb_refuses_a_problem_too_large_for_the_whole_hessian():
    with pytest.raises(ValueError, match="at most 128 parameters, got 129"):
        climb(lambda x: (x**2).sum(), torch.zeros(129), torch.ones(129))
