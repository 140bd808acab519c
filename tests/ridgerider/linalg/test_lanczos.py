"""eigsh against dense eigh: planted clusters, digits MLP Hessians, warm starts, bad input."""

from __future__ import annotations

import functools

import pytest
import torch

from ridgerider.linalg import ConvergenceWarning, HessianOperator, NonFiniteProductError
from ridgerider.linalg import eigsh as eigsh_any_size
from ridgerider.problems.digits import digits_loss, digits_mlp, symmetric_point, zero_point
from tests.ridgerider.linalg.conftest import CLUSTERED, MatvecOperator, planted_matrix

# These tests are of the Lanczos iteration: small operators are not solved whole here.
eigsh = functools.partial(eigsh_any_size, exact_below=0)


def assert_matches_dense(dense: torch.Tensor, result, k: int, which: str, tol: float) -> None:
    """Known-answer checks shared by every eigsh test against a dense reference."""
    values, vectors, info = result
    A = dense.double()
    spectrum = torch.linalg.eigvalsh(A)
    norm = spectrum.abs().max().item()
    expected = spectrum[:k] if which == "SA" else spectrum.flip(0)[:k]
    assert values.dtype == torch.float64
    assert vectors.shape == (A.shape[0], k)
    # The i-th value is the i-th eigenvalue: no copy missed, none skipped.
    assert (values.cpu() - expected).abs().max().item() <= tol * norm
    V = vectors.double()
    assert (V.T @ V - torch.eye(k, dtype=torch.float64)).abs().max().item() < 1e-5
    true_residuals = torch.linalg.vector_norm(A @ V - V * values.cpu(), dim=0)
    assert true_residuals.max().item() <= 3 * tol * norm
    assert info.all_converged
    assert torch.allclose(info.residuals, true_residuals, atol=1e-3 * tol * norm + 1e-6 * norm)


@pytest.mark.parametrize("k", [1, 5, 8, 11, 12])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-5)])
def test_planted_repeats_and_clusters_come_back_with_full_multiplicity(k, dtype, tol):
    A, _ = planted_matrix(200, CLUSTERED, dtype=dtype)
    result = eigsh(A, k, tol=tol)
    assert_matches_dense(A, result, k, "SA", tol)
    values = result.eigenvalues
    assert int((values - -2.0).abs().lt(1e-4).sum()) == min(k, 5)
    if k >= 8:
        assert int((values - -1.5).abs().lt(1e-4).sum()) == 3
    if k >= 11:
        assert int((values - -1.2).abs().lt(1e-4).sum()) == 3


def test_largest_end_is_descending():
    A, _ = planted_matrix(150, CLUSTERED)
    result = eigsh(A, 4, "LA")
    assert_matches_dense(A, result, 4, "LA", 1e-8)
    assert torch.all(result.eigenvalues[:-1] >= result.eigenvalues[1:])


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("point", ["symmetric", "random"])
def test_digits_mlp_hessian(digits, digits_h6, dtype, tol, point):
    loss64, n = digits_h6
    generator = torch.Generator().manual_seed(3)
    if point == "symmetric":
        theta = symmetric_point(0.5 * torch.randn(85, generator=generator, dtype=torch.float64), 6)
    else:
        theta = 0.5 * torch.randn(n, generator=generator, dtype=torch.float64)
    dense = torch.func.hessian(loss64)(theta)
    loss = digits_loss(digits_mlp(6, dtype=dtype), digits_split_as(digits, dtype))
    k = 8
    result = eigsh(HessianOperator(loss, theta.to(dtype)), k, tol=tol)
    assert_matches_dense(dense, result, k, "SA", tol)
    if point == "symmetric":
        # 6 interchangeable hidden units: the most negative eigenvalue repeats 5 (= H - 1) times.
        spectrum = torch.linalg.eigvalsh(dense)
        copies = int((spectrum - spectrum[0]).abs().lt(1e-6).sum())
        assert copies == 5
        found = int(
            (result.eigenvalues.cpu() - spectrum[0]).abs().lt(1e-6 if tol < 1e-6 else 1e-3).sum()
        )
        assert found == copies


def digits_split_as(digits, dtype):
    return type(digits)(
        digits.x_train.to(dtype), digits.y_train, digits.x_test.to(dtype), digits.y_test
    )


def test_zero_point_known_answer(digits):
    """KNOWN-ANSWERS.md: 64-8-10 at the zero point has -0.2405 eight times, then -0.2089."""
    model = digits_mlp(8)
    loss = digits_loss(model, digits)
    op = HessianOperator(loss, zero_point(model, digits))
    values, _, info = eigsh(op, 10)
    assert torch.allclose(values[:8], torch.full((8,), -0.2405, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(values[8:], torch.full((2,), -0.2089, dtype=torch.float64), atol=1e-4)
    assert info.all_converged


@pytest.fixture(scope="module")
def digits_h16_random(digits):
    """The 64-16-10 MLP's loss and a random point on it (n = 1210)."""
    model = digits_mlp(16)
    n = sum(p.numel() for p in model.parameters())
    theta = 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return digits_loss(model, digits), theta


def test_warm_start_after_a_small_change_costs_far_fewer_products(digits_h16_random):
    loss, theta = digits_h16_random
    before = eigsh(HessianOperator(loss, theta), 4, tol=1e-5)
    moved = theta + 1e-3 * before.eigenvectors[:, 0]
    cold = eigsh(HessianOperator(loss, moved), 4, tol=1e-5)
    warm = eigsh(HessianOperator(loss, moved), 4, tol=1e-5, v0=before.eigenvectors)
    assert torch.allclose(warm.eigenvalues, cold.eigenvalues, atol=1e-6)
    assert warm.info.all_converged
    assert warm.info.matvecs * 2.5 <= cold.info.matvecs, (warm.info.matvecs, cold.info.matvecs)


def test_tracking_one_vector_with_guards_is_a_handful_of_products(digits_h16_random):
    """A ride re-finds one eigenvector after a step, starting from it and two neighbours."""
    loss, theta = digits_h16_random
    before = eigsh(HessianOperator(loss, theta), 3, tol=1e-5)
    moved = theta + 1e-3 * before.eigenvectors[:, 0]
    warm = eigsh(HessianOperator(loss, moved), 1, tol=1e-5, v0=before.eigenvectors)
    assert warm.info.matvecs <= 10, warm.info.matvecs
    assert warm.info.all_converged
    assert abs(warm.eigenvectors[:, 0] @ before.eigenvectors[:, 0]) > 0.99


def test_operator_with_only_matvec_is_accepted():
    A, _ = planted_matrix(60, CLUSTERED[:5])

    assert_matches_dense(A, eigsh(MatvecOperator(60, lambda v: A @ v), 3), 3, "SA", 1e-8)


def test_small_operator_is_solved_exactly_when_the_space_is_exhausted():
    A, _ = planted_matrix(6, [-1.0, -1.0])
    result = eigsh(A, 6)
    assert_matches_dense(A, result, 6, "SA", 1e-8)
    assert result.info.matvecs == 6


def test_same_seed_same_answer():
    A, _ = planted_matrix(100, CLUSTERED)
    first, second = eigsh(A, 4, seed=7), eigsh(A, 4, seed=7)
    assert torch.equal(first.eigenvalues, second.eigenvalues)
    assert torch.equal(first.eigenvectors, second.eigenvectors)


def test_budget_exhausted_warns_and_flags_unconverged():
    A, _ = planted_matrix(300, CLUSTERED)
    with pytest.warns(ConvergenceWarning, match=r"of 8 pairs converged .*max_matvecs=40"):
        result = eigsh(A, 8, max_matvecs=40)
    assert result.info.matvecs <= 40
    assert not result.info.all_converged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, r"k must be an integer in \[1, 20\], got 0"),
        ({"k": 21}, r"k must be an integer in \[1, 20\], got 21"),
        ({"k": 2, "which": "SM"}, r'which must be "SA" or "LA"'),
        ({"k": 2, "tol": 0.0}, r"tol must be in \(0, 1\)"),
        ({"k": 2, "block_size": 0}, r"block_size must be an integer in \[1, 20\]"),
        ({"k": 2, "max_basis": 3}, r"max_basis must be an integer in \[4, 20\]"),
        ({"k": 2, "max_matvecs": 1}, r"max_matvecs must be an integer in >= 2"),
        ({"k": 2, "v0": torch.zeros(5)}, r"v0 must have shape \(20,\) or \(20, j\)"),
    ],
)
def test_bad_arguments_name_the_field_and_range(kwargs, message):
    A, _ = planted_matrix(20, [-1.0])
    with pytest.raises(ValueError, match=message):
        eigsh(A, **kwargs)


def test_non_square_and_non_symmetric_operators_are_rejected():
    with pytest.raises(ValueError, match="must be square"):
        eigsh(torch.zeros(4, 5), 1)
    skew = torch.randn(30, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    with pytest.raises(ValueError, match="the operator is not symmetric"):
        eigsh(MatvecOperator(30, lambda v: skew @ v), 2)


def test_non_finite_product_names_the_product():
    A, _ = planted_matrix(40, [-1.0])

    calls = []

    def turns_nan(v: torch.Tensor) -> torch.Tensor:
        calls.append(v)
        return A @ v if len(calls) < 5 else torch.full_like(v, float("nan"))

    with pytest.raises(NonFiniteProductError, match=r"product #5 returned NaN or Inf"):
        eigsh(MatvecOperator(40, turns_nan), 1)


def test_a_nearly_zero_operator_is_not_mistaken_for_a_non_symmetric_one():
    A, _ = planted_matrix(50, [-1.0, -0.5])
    tiny = 1e-9 * A
    tiny[0, 1] += 1e-17  # rounding-sized asymmetry in absolute terms
    tiny[1, 0] -= 1e-17

    values = eigsh(MatvecOperator(50, lambda v: tiny @ v), 2).eigenvalues
    assert torch.allclose(values, torch.tensor([-1e-9, -0.5e-9], dtype=torch.float64), rtol=1e-6)


def test_guard_vectors_and_a_small_basis_restart_without_overflow():
    A, _ = planted_matrix(120, CLUSTERED)
    result = eigsh(A, 2, block_size=6, max_basis=8)
    assert_matches_dense(A, result, 2, "SA", 1e-8)
    assert result.info.restarts > 0


def test_a_tiny_operator_is_solved_exactly_from_one_block_of_n_products():
    A, spectrum = planted_matrix(40, CLUSTERED)
    calls = []

    def matvec(v):
        calls.append(1)
        return A @ v

    result = eigsh_any_size(MatvecOperator(40, matvec), 5)
    assert len(calls) == 40 and result.info.matvecs == 40 and result.info.all_converged
    torch.testing.assert_close(result.eigenvalues, spectrum[:5], rtol=0, atol=1e-12)
    residuals = A @ result.eigenvectors - result.eigenvectors * result.eigenvalues
    assert residuals.norm(dim=0).max() < 1e-12
    largest = eigsh_any_size(A, 2, "LA").eigenvalues
    torch.testing.assert_close(largest, spectrum.flip(0)[:2], rtol=0, atol=1e-12)
