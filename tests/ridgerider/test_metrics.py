"""A solution's behavioural metrics."""

from __future__ import annotations

import math

import pytest

from ridgerider.critical import classify
from ridgerider.metrics import minimum_metrics
from ridgerider.problems.tree_mdp import TreeMDP


def test_the_distance_from_the_start_is_to_the_solution_s_copy_nearest_it():
    """A tree-MDP policy's angles count modulo 2 pi: a minimum whose unreached state sits at
    1614 pi instead of 0 (a descent along that flat-ish direction took it there) is the same
    policy, and as far from the start."""
    tree = TreeMDP.build(4, 0)
    problem = tree.problem()
    theta = tree.deterministic_point(tree.solutions()[0])
    far = theta.clone()
    unreached = int((theta == 0).nonzero()[0])
    far[unreached] = 1614 * math.pi
    near, copy = (classify(problem.loss, t) for t in (theta, far))
    assert near.kind == copy.kind == "minimum"
    distance = minimum_metrics(problem, near)["distance_from_start"]
    assert minimum_metrics(problem, copy)["distance_from_start"] == pytest.approx(distance)
    assert distance == pytest.approx((theta - problem.start).norm().item())
