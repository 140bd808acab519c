"""Tracking one eigenvector across a small change of the operator."""

from __future__ import annotations

import statistics

import torch

from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.tracking import track_eigenvector
from ridgerider.problems.digits import digits_mlp_problem
from ridgerider.search.ridges import canonical_basis
from tests.ridgerider.linalg.conftest import planted_matrix


def perturbed(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A planted matrix's eigenvectors, and a symmetric change of it with its eigenpairs:
    (vectors of A, B, eigenvalues of B, eigenvectors of B)."""
    A, _ = planted_matrix(n, [-2.0, -1.0, -0.5])
    _, vectors = torch.linalg.eigh(A)
    E = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    B = A + 1e-3 * (E + E.T)
    values_b, vectors_b = torch.linalg.eigh(B)
    return vectors, B, values_b, vectors_b


def test_tracks_the_continuation_not_the_smallest():
    vectors, B, values_b, vectors_b = perturbed(200, seed=0)
    # Track the second eigenvector (not the smallest) across the change.
    tracked = track_eigenvector(B, vectors[:, 1], vectors[:, [0, 2]], tol=1e-8, norm_estimate=10.0)
    assert abs(tracked.eigenvalue - values_b[1].item()) < 1e-8
    assert (
        tracked.vector @ vectors_b[:, 1] * torch.sign(vectors[:, 1] @ vectors_b[:, 1]) > 1 - 1e-10
    )
    assert tracked.vector @ vectors[:, 1] > 0, "the sign is kept"
    assert tracked.neighbours.shape == (200, 2)


def test_a_ride_from_the_digits_zero_point_tracks_in_a_few_products():
    """The 8-fold eigenvalue at the zero point splits as the ride breaks the symmetry. The ride
    starts along the group's canonical ridge (carried by one hidden unit): an arbitrary mixture
    of the copies, as the solver returns, depends on rounding and turns away at once."""
    problem = digits_mlp_problem(hidden=8)
    start = eigsh(HessianOperator(problem.loss, problem.start), 9)
    group = canonical_basis(start.eigenvectors[:, :8])
    theta, d, neighbours = problem.start, group[:, 0], group[:, 1:3]
    costs = []
    for _ in range(15):
        theta = theta + 0.05 * d
        tracked = track_eigenvector(
            HessianOperator(problem.loss, theta), d, neighbours, tol=1e-3, norm_estimate=13.0
        )
        assert tracked.residual <= 1e-3 * 13.0
        costs.append(tracked.matvecs)
        assert tracked.vector @ d > 0.9, "the ridge turns smoothly"
        d, neighbours = tracked.vector, tracked.neighbours
    assert statistics.median(costs) <= 10, costs


def test_a_tiny_operator_is_tracked_exactly_in_one_block():
    vectors, B, values_b, vectors_b = perturbed(20, seed=1)
    tracked = track_eigenvector(B, -vectors[:, 1], vectors[:, [0, 2]], max_matvecs=30)
    assert tracked.matvecs == 20 and tracked.residual < 1e-12
    assert abs(tracked.eigenvalue - values_b[1].item()) < 1e-12
    assert tracked.vector @ vectors[:, 1] < 0, "the sign of the direction is kept"
    assert abs(tracked.vector @ vectors_b[:, 1]) > 1 - 1e-12
    assert tracked.neighbours.shape == (20, 2)
