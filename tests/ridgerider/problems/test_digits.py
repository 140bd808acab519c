"""The digits MLP's special points against KNOWN-ANSWERS.md, with one and two hidden layers."""

from __future__ import annotations

import pytest
import torch

from ridgerider.flat import FlatLayout
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.colored import colored_digits_problem
from ridgerider.problems.digits import (
    digits_loss,
    digits_mlp,
    digits_mlp_problem,
    digits_split,
    symmetric_point,
    zero_point,
)
from ridgerider.problems.parameters import ParameterError
from ridgerider.problems.registry import load
from tests.ridgerider.problems.units import permute_units


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


@pytest.fixture(scope="module")
def one_layer_saddle():
    return digits_mlp_problem(hidden=8, start="saddle")


@pytest.fixture(scope="module")
def two_layers():
    return digits_mlp_problem(hidden=8, layers=2)


def test_the_one_layer_mis_is_the_known_saddle(one_layer_saddle):
    problem = one_layer_saddle
    assert problem.name == "digits-mlp-64-8-10-tanh"
    assert problem.loss(problem.start).item() == pytest.approx(1.3696, abs=1e-4)
    assert torch.func.grad(problem.loss)(problem.start).norm() < 1e-8
    spectrum = torch.linalg.eigvalsh(torch.func.hessian(problem.loss)(problem.start))
    assert spectrum[-1].item() == pytest.approx(12.87, abs=0.01)
    negative = spectrum[spectrum < -1e-9]
    assert negative.numel() == 140  # 20 distinct values x 7 (H - 1)
    assert torch.allclose(negative.view(20, 7), negative.view(20, 7)[:, :1], atol=1e-9)
    assert negative[0].item() == pytest.approx(-0.2117, abs=1e-4)
    assert negative[7].item() > negative[0].item() + 0.01


def test_two_hidden_layers_start_at_their_mis_with_sevenfold_negative_curvature(two_layers):
    problem = two_layers
    assert problem.name == "digits-mlp-64-8-8-10-tanh"
    assert problem.dim == (64 + 1) * 8 + (8 + 1) * 8 + (8 + 1) * 10
    gradient, value = torch.func.grad_and_value(problem.loss)(problem.start)
    assert gradient.norm() <= 1e-8 * max(1.0, value.item())
    assert value.item() == pytest.approx(1.3676158, abs=1e-6)
    params = FlatLayout.of(digits_mlp(8, layers=2)).unflatten(problem.start)
    assert torch.equal(params["2.weight"], params["2.weight"][0, 0].expand(8, 8))
    values, _, _ = eigsh(HessianOperator(problem.loss, problem.start), 14, block_size=7)
    # the two most negative eigenvalues, each once per standard representation's dimension
    assert torch.allclose(values.view(2, 7), values.view(2, 7)[:, :1], atol=1e-9)
    assert torch.allclose(values[::7], torch.tensor([-0.216654, -0.043277]).double(), atol=1e-6)


def test_between_identical_layers_the_curvature_is_the_weight_decay_alone(two_layers):
    """W2 + t a b^T with a, b orthogonal to ones leaves every pre-activation unchanged when the
    first layer's units are identical, so only the penalty curves: H v = 2 * weight_decay * v."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 8, generator=generator, dtype=torch.float64)
    direction = torch.zeros(two_layers.dim, dtype=torch.float64)
    FlatLayout.of(digits_mlp(8, layers=2)).unflatten(direction)["2.weight"].copy_(
        torch.outer(a - a.mean(), b - b.mean())
    )
    product = HessianOperator(two_layers.loss, two_layers.start).matvec(direction)
    assert torch.allclose(product, 2 * 0.5e-3 * direction, atol=1e-12)


def test_two_layer_copies_are_merged_by_the_problems_align(two_layers):
    generator = torch.Generator().manual_seed(5)
    theta = torch.randn(two_layers.dim, generator=generator, dtype=torch.float64)
    orders = [torch.randperm(8, generator=generator) for _ in range(2)]
    signs = [torch.tensor([1.0, -1.0] * 4).double(), torch.tensor([-1.0] * 8).double()]
    copy = permute_units(theta, [64, 8, 8, 10], orders, signs)
    assert (two_layers.align(theta, copy) - theta).norm() < 1e-12


def test_depth_is_checked_and_the_zero_start_needs_one_hidden_layer():
    with pytest.raises(ValueError, match=r"start='zero' needs layers=1: .* use start='mis'"):
        digits_mlp_problem(layers=2, start="zero")
    for layers in (0, 5, 1.5):
        with pytest.raises(ValueError, match=r"layers must be an integer in \[1, 4\]"):
            digits_mlp_problem(layers=layers)
    with pytest.raises(ValueError, match=r"layers must be an integer in \[1, 4\]"):
        colored_digits_problem(layers=5)


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
    with pytest.raises(ValueError, match=r"weight_decay must be a number in \[0, 1\]"):
        digits_mlp_problem(weight_decay=-1.0)


def test_device_cuda_is_refused_by_name_where_torch_sees_no_gpu_and_placed_where_it_does():
    if torch.cuda.is_available():
        assert load("digits-mlp:hidden=2,device=cuda").device.type == "cuda"
    else:
        with pytest.raises(ParameterError, match=r"device must be 'cpu' here.*got 'cuda'"):
            load("digits-mlp:hidden=2,device=cuda")
    with pytest.raises(ParameterError, match="device must be one of 'cpu', 'cuda', got 'gpu'"):
        load("mnist-mlp:device=gpu")


def test_stored_weights_are_placed_for_the_loss_and_models_are_handed_out_on_the_cpu():
    problem = load("digits-mlp:hidden=2")
    stored = problem.start.float()  # e.g. read back from an artifact in another dtype
    placed = problem.place(stored)
    assert placed.dtype == problem.dtype and placed.device == problem.device
    model = problem.to_module(problem.start)
    assert next(model.parameters()).device.type == "cpu" and not model.training
    inputs = problem.splits["test"][0][:5]
    with torch.no_grad():
        assert torch.equal(model(inputs), problem.predict(problem.start, inputs))
