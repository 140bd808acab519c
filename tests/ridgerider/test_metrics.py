"""A solution's behavioural metrics."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from ridgerider.critical import classify
from ridgerider.linalg import gradient_and_hessian
from ridgerider.metrics import curvature_metrics, minimum_metrics
from ridgerider.problems.base import module_problem
from ridgerider.problems.digits import digits_split
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


def test_a_float32_network_s_sharpness_converges_to_its_dtype_s_accuracy():
    """Products of a float32 Hessian carry rounding of about 1e-6 of ||H||: a sharpness asked
    to 1e-6 of it never converged on this 610-parameter network and spent 6,100 products (10 s
    here). It is asked to float32's own 1e-5, and matches the float64 Hessian's top
    eigenvalue."""
    data = digits_split(0, dtype=torch.float32)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10))
    problem = module_problem(
        "mlp", network, nn.functional.cross_entropy, (data.x_train, data.y_train)
    )
    assert problem.dim == 610 and problem.start.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sharpness = curvature_metrics(problem, problem.start)["sharpness"]
    _, hessian = gradient_and_hessian(
        lambda t: problem.loss(t.float()).double(), problem.start.double()
    )
    assert sharpness == pytest.approx(torch.linalg.eigvalsh(hessian)[-1].item(), rel=1e-4)
