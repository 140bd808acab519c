"""Tracking one eigenvector across a small change of the operator."""

from __future__ import annotations

import statistics

import pytest
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


def _rotated(values: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric matrix with the given eigenvalues and 66 more (10 to 75) in a random
    orthonormal basis, large enough to be tracked from its eigenvalues and shifted solves:
    (matrix, eigenvectors as columns, those of `values` first)."""
    values = [*values, *range(10, 76)]
    n = len(values)
    generator = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator)).Q
    return Q @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ Q.T, Q


def test_a_small_operators_continuation_is_found_past_nearer_eigenvalues():
    """d = 0.8 e(-1) + 0.6 e(5): its Rayleigh quotient 1.16 lies nearer the eigenvalues 0 and
    -0.2 than -1, yet the continuation is the eigenvector of -1 (overlap 0.8), sign kept."""
    H, Q = _rotated([-1.0, -0.2, 0.0, 5.0], seed=3)
    d = 0.8 * Q[:, 0] + 0.6 * Q[:, 3]
    tracked = track_eigenvector(H, d, Q[:, [1]])
    assert tracked.eigenvalue == pytest.approx(-1.0, abs=1e-12)
    assert (tracked.vector - Q[:, 0]).norm() < 1e-12
    assert tracked.residual < 1e-12


def test_a_turned_ridge_is_matched_among_every_eigenvector():
    """No eigenvector overlaps d by more than 1/sqrt(2): the one of largest overlap is taken."""
    H, Q = _rotated([-1.0, -0.5, 0.5, 2.0], seed=4)
    d = 0.62 * Q[:, 0] + 0.58 * Q[:, 1] + 0.53 * Q[:, 2]
    tracked = track_eigenvector(H, d, Q[:, [1]])
    assert tracked.eigenvalue == pytest.approx(-1.0, abs=1e-12)
    assert (tracked.vector - Q[:, 0]).norm() < 1e-12
    assert tracked.neighbours.shape == (70, 1)
