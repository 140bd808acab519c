"""Canonical ridges: the basis of a repeated eigenvalue's eigenspace that does not depend on the
basis the eigensolver returned, and which ridges are ridden, in which directions."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ridgerider.critical import ZERO_RTOL, classify
from ridgerider.linalg import HessianOperator
from ridgerider.linalg.tracking import track_eigenvector
from ridgerider.problems.base import Problem
from ridgerider.problems.classic import styblinski_tang
from ridgerider.problems.digits import digits_mlp_problem
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec
from ridgerider.search.ridges import (
    Spectrum,
    canonical_basis,
    choose_ridges,
    drop_mirrored,
    equal_groups,
    make_ridge,
    node_spectrum,
    orient,
    ridge_policy,
    spectrum_at,
)

HIDDEN = 8


def rotated(vectors: torch.Tensor, seed: int) -> torch.Tensor:
    """The same span in another orthonormal basis, as another CPU's rounding would give."""
    generator = torch.Generator().manual_seed(seed)
    size = vectors.shape[1]
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return vectors @ q


def unit_masses(vector: torch.Tensor) -> torch.Tensor:
    """The squared norm of a 64-8-10 MLP direction on each hidden unit's weights."""
    w1 = vector[: HIDDEN * 64].view(HIDDEN, 64)
    w2 = vector[HIDDEN * 64 + HIDDEN : HIDDEN * 64 + HIDDEN + 10 * HIDDEN].view(10, HIDDEN)
    return w1.square().sum(1) + w2.square().sum(0)


def test_the_canonical_basis_depends_only_on_the_span():
    generator = torch.Generator().manual_seed(1)
    span = torch.linalg.qr(torch.randn(50, 4, generator=generator, dtype=torch.float64))
    first = canonical_basis(span.Q)
    for seed in range(5):
        assert torch.allclose(canonical_basis(rotated(span.Q, seed)), first, atol=1e-12)
    assert torch.allclose(first.T @ first, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_a_fully_repeated_eigenvalue_rides_the_coordinate_axes():
    """Styblinski-Tang's start: H = c I, so every basis is an eigenbasis; the canonical one is
    the axes, the directions that continue as ridges of a separable function."""
    problem = styblinski_tang(4)
    root = classify(problem.loss, problem.start)
    spectrum = node_spectrum(problem, root, SearchSpec().resolved(problem))
    assert torch.allclose(spectrum.vectors, torch.eye(4, dtype=torch.float64), atol=1e-8)


def test_a_whole_spectrum_gives_the_norm_estimate_without_another_solve():
    """Every eigenpair of a small problem (one block of n products) already holds ||H||."""
    problem = styblinski_tang(3)
    theta = torch.tensor([-2.9, 0.1, 2.7], dtype=torch.float64)
    spectrum = spectrum_at(problem, theta, problem.dim)
    expected = (6 * theta**2 - 16).sort().values
    assert torch.allclose(spectrum.values, expected, atol=1e-12)
    assert spectrum.norm_estimate == pytest.approx(expected.abs().max().item(), rel=1e-12)
    assert spectrum.hvps == problem.dim


def test_at_the_digits_zero_point_each_ridge_is_carried_by_one_unit():
    problem = digits_mlp_problem(hidden=HIDDEN)
    root = classify(problem.loss, problem.start, zero_modes=1)
    spectrum = node_spectrum(problem, root, SearchSpec(ridges_per_node=2).resolved(problem))
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    assert [len(g) for g in groups[:2]] == [HIDDEN, HIDDEN]  # KNOWN-ANSWERS: 9 values x 8
    for group in groups[:2]:
        for position, index in enumerate(group):
            masses = unit_masses(spectrum.vectors[:, index])
            assert masses[position].item() > 1 - 1e-8  # unit 0 carries the first, and so on
    # The same whatever basis the solver returned:
    group = groups[0]
    again = canonical_basis(rotated(spectrum.vectors[:, group], seed=3))
    assert torch.allclose(again, spectrum.vectors[:, group], atol=1e-10)


def test_a_canonical_ridge_turns_smoothly_as_it_is_ridden():
    """A mixture of the symmetric copies turns away at once (the eigenspace splits as the ride
    breaks the symmetry); the ridge carried by one unit continues: consecutive directions keep
    overlap >= 0.9 over the first 10 steps, whatever basis the solver returned."""
    problem = digits_mlp_problem(hidden=HIDDEN)
    root = classify(problem.loss, problem.start, zero_modes=1)
    spectrum = node_spectrum(problem, root, SearchSpec(ridges_per_node=2).resolved(problem))
    for seed in (None, 0, 1):
        vectors = spectrum.vectors.clone()
        if seed is not None:  # another machine's eigensolver output, made canonical again
            vectors[:, :HIDDEN] = canonical_basis(rotated(vectors[:, :HIDDEN], seed))
        ridge = make_ridge(0, replace(spectrum, vectors=vectors), 0, 1, track=3)
        theta, d, neighbours = problem.start, ridge.direction, ridge.neighbours
        for _ in range(10):
            theta = theta + 0.05 * d
            tracked = track_eigenvector(
                HessianOperator(problem.loss, theta), d, neighbours, norm_estimate=13.0
            )
            assert tracked.vector @ d >= 0.9, "the ridge turns smoothly"
            assert tracked.matvecs <= 10
            d, neighbours = tracked.vector, tracked.neighbours


def test_both_signs_at_a_critical_point_only_the_downhill_one_elsewhere():
    values = torch.tensor([-1.0, -0.5, 2.0], dtype=torch.float64)
    spectrum = Spectrum(values, torch.eye(3, dtype=torch.float64), 2.0, 0)
    problem = styblinski_tang(3)
    spec = SearchSpec(step_size=0.1)
    critical = torch.zeros(3, dtype=torch.float64)
    assert choose_ridges(problem, spectrum, spec, ZERO_RTOL, critical) == [
        (0, 1),
        (0, -1),
        (1, 1),
        (1, -1),
    ]
    # A gradient along e_1 of 1.0 beats its curvature over one step (0.5 * 0.5 * 0.1): the
    # uphill sign is left out, and orienting makes the downhill sign the + one.
    tilted = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    oriented = orient(spectrum, tilted, spec.step_size)
    assert oriented.vectors[1, 1] == -1.0 and oriented.vectors[0, 0] == 1.0
    assert choose_ridges(problem, oriented, spec, ZERO_RTOL, tilted) == [(0, 1), (0, -1), (1, 1)]


def test_a_ridge_whose_two_ways_are_mirror_images_is_ridden_one_way():
    """A tree-MDP policy angle at a deterministic end (theta = pi/2) sits where theta and
    pi - theta are one policy: its two ways are copies and the - one is dropped. At theta = 0
    the two ways lead to p > 1/2 and p < 1/2, different policies: both are kept; and a problem
    with no symmetry (no `align`) keeps every ride."""
    tree = TreeMDP.build(4, 3)
    problem = tree.problem()
    theta = tree.deterministic_point(tree.solutions()[0])
    path = int(theta.abs().argmax())
    unreached = int((theta == 0).nonzero()[0])
    axes = torch.eye(problem.dim, dtype=torch.float64)[:, [path, unreached]]
    spectrum = Spectrum(torch.tensor([0.3, 0.1], dtype=torch.float64), axes, 1.0, 0)
    rides = [(0, 1), (0, -1), (1, 1), (1, -1)]
    assert drop_mirrored(problem, theta, spectrum, rides, 0.02) == [(0, 1), (1, 1), (1, -1)]
    plain = replace(problem, align=None)
    assert drop_mirrored(plain, theta, spectrum, rides, 0.02) == rides


def test_auto_rides_one_eigenvector_a_group_where_the_problem_says_its_groups_are_copies():
    bowl = Problem("bowl", lambda x: -(x**2).sum() + (x**4).sum(), 2, torch.zeros(2))
    aligned = replace(bowl, align=lambda reference, theta: theta)
    auto, fixed = SearchSpec(), SearchSpec(ridge_policy="one-per-group")
    assert ridge_policy(bowl, auto) == "every-direction"
    assert ridge_policy(aligned, auto) == "one-per-group"
    assert ridge_policy(replace(aligned, ridge_policy="every-direction"), auto) == "every-direction"
    assert ridge_policy(replace(bowl, ridge_policy="every-direction"), fixed) == "one-per-group"


def test_a_problem_s_ridge_policy_is_one_of_the_two_named():
    with pytest.raises(ValueError, match="ridge_policy must be None, 'one-per-group' or"):
        Problem("bowl", lambda x: (x**2).sum(), 2, torch.zeros(2), ridge_policy="every_direction")
