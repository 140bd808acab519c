"""The digits MLP's special points against KNOWN-ANSWERS.md."""

from __future__ import annotations

import pytest
import torch

from ridgerider.flat import FlatLayout
from ridgerider.problems.digits import (
    digits_loss,
    digits_mlp,
    digits_mlp_problem,
    digits_split,
    symmetric_point,
    symmetric_saddle,
    zero_point,
)


@pytest.fixture(scope="module")
def digits():
    return digits_split()


def test_split_is_stratified_75_25(digits):
    assert len(digits.y_train) == 1347 and len(digits.y_test) == 450
    assert digits.x_train.min() >= 0 and digits.x_train.max() <= 1
    train_share = torch.bincount(digits.y_train) / len(digits.y_train)
    test_share = torch.bincount(digits.y_test) / len(digits.y_test)
    assert (train_share - test_share).abs().max() < 0.01


def test_symmetric_point_makes_every_hidden_unit_equal():
    model = digits_mlp(5)
    unit = torch.randn(85, dtype=torch.float64)
    params = FlatLayout.of(model).unflatten(symmetric_point(unit, 5))
    assert torch.equal(params["0.weight"], unit[:64].expand(5, 64))
    assert torch.equal(params["0.bias"], unit[64].expand(5))
    assert torch.equal(params["2.weight"], unit[65:75, None].expand(10, 5))
    assert torch.equal(params["2.bias"], unit[75:])


def test_zero_point_is_critical_with_the_known_spectrum(digits):
    model = digits_mlp(8)
    loss = digits_loss(model, digits)
    theta = zero_point(model, digits)
    assert torch.func.grad(loss)(theta).norm() < 1e-12
    spectrum = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
    negative = spectrum[spectrum < -1e-9]
    assert negative.numel() == 72  # 9 distinct values x 8 (H)
    known = [-0.2405, -0.2089, -0.1836, -0.1351, -0.1251, -0.1043, -0.0913, -0.0691, -0.0567]
    assert torch.allclose(negative.view(9, 8), torch.tensor(known)[:, None].double(), atol=1e-4)


def test_symmetric_saddle_is_the_known_critical_point(digits):
    model = digits_mlp(8)
    loss = digits_loss(model, digits)
    theta = symmetric_saddle(loss, 8)
    assert loss(theta).item() == pytest.approx(1.3696, abs=1e-4)
    assert torch.func.grad(loss)(theta).norm() < 1e-8
    spectrum = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
    assert spectrum[-1].item() == pytest.approx(12.87, abs=0.01)
    negative = spectrum[spectrum < -1e-9]
    assert negative.numel() == 140  # 20 distinct values x 7 (H - 1)
    assert torch.allclose(negative.view(20, 7), negative.view(20, 7)[:, :1], atol=1e-9)


def test_bad_model_arguments_are_named():
    with pytest.raises(ValueError, match="activation must be one of"):
        digits_mlp(4, activation="sigmoid")
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        digits_mlp(0)


def test_digits_mlp_problem_starts_at_the_zero_point_and_merges_copies():
    problem = digits_mlp_problem(hidden=4)
    assert problem.dim == 75 * 4 + 10
    assert torch.func.grad(problem.loss)(problem.start).norm() < 1e-12
    assert problem.zero_modes == 1
    theta = torch.randn(
        problem.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    w1, b1, w2, b2 = torch.split(theta, [256, 4, 40, 10])
    swapped = torch.cat(
        [
            w1.view(4, 64)[[1, 0, 2, 3]].reshape(-1),
            b1[[1, 0, 2, 3]],
            w2.view(10, 4)[:, [1, 0, 2, 3]].reshape(-1),
            b2,
        ]
    )
    assert torch.allclose(problem.align(theta, swapped), theta, atol=1e-12)
    with pytest.raises(ValueError, match="start must be one of"):
        digits_mlp_problem(start="random")
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        digits_mlp_problem(weight_decay=-1.0)
