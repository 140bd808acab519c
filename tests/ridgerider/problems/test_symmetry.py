"""Aligning hidden units recovers a permuted, sign-flipped, shifted copy exactly."""

from __future__ import annotations

import pytest
import torch

from ridgerider.flat import FlatLayout
from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split
from ridgerider.problems.symmetry import align
from tests.ridgerider.problems.units import permute_units


def scrambled(theta: torch.Tensor, hidden: int, generator: torch.Generator) -> torch.Tensor:
    """A functionally identical copy: units permuted, some signs flipped, output bias shifted."""
    model = digits_mlp(hidden)
    params = FlatLayout.of(model).unflatten(theta.clone())
    order = torch.randperm(hidden, generator=generator)
    signs = torch.where(torch.rand(hidden, generator=generator) < 0.5, -1.0, 1.0).double()
    w1 = params["0.weight"][order] * signs[:, None]
    b1 = params["0.bias"][order] * signs
    w2 = params["2.weight"][:, order] * signs
    b2 = params["2.bias"] + 0.7
    return torch.cat([w1.reshape(-1), b1, w2.reshape(-1), b2])


def test_align_undoes_permutations_sign_flips_and_the_softmax_shift():
    hidden = 7
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(75 * hidden + 10, generator=generator, dtype=torch.float64)
    copy = scrambled(theta, hidden, generator)
    loss = digits_loss(digits_mlp(hidden), digits_split())
    assert abs(loss(copy).item() - loss(theta).item()) < 1e-12  # the same function
    assert (copy - theta).norm() > 1.0
    aligned = align(theta, copy, inputs=64, hidden=hidden, outputs=10, odd_activation=True)
    assert (aligned - theta).norm() < 1e-12


def test_without_odd_symmetry_sign_flips_are_not_undone():
    hidden = 5
    generator = torch.Generator().manual_seed(1)
    theta = torch.randn(75 * hidden + 10, generator=generator, dtype=torch.float64)
    copy = scrambled(theta, hidden, generator)
    aligned = align(theta, copy, inputs=64, hidden=hidden, outputs=10, odd_activation=False)
    assert (aligned - theta).norm() > 1.0


def test_without_the_output_bias_shift_the_output_bias_is_kept():
    """A regressor's outputs, or one logit's sigmoid, change with a shift of the output bias:
    the copy is aligned up to it, and the shift stays."""
    hidden = 7
    generator = torch.Generator().manual_seed(2)
    theta = torch.randn(75 * hidden + 10, generator=generator, dtype=torch.float64)
    copy = scrambled(theta, hidden, generator)
    aligned = align(
        theta,
        copy,
        inputs=64,
        hidden=hidden,
        outputs=10,
        odd_activation=True,
        shift_output_bias=False,
    )
    assert (aligned[:-10] - theta[:-10]).norm() < 1e-12
    assert torch.equal(aligned[-10:], copy[-10:])
    assert (aligned[-10:] - theta[-10:]).sub(0.7).abs().max() < 1e-12


@pytest.mark.parametrize("layers", [2, 3])
def test_align_undoes_the_symmetries_of_every_hidden_layer(layers):
    hidden = 6
    widths = [64, *[hidden] * layers, 10]
    generator = torch.Generator().manual_seed(layers)
    theta = torch.randn(
        FlatLayout.of(digits_mlp(hidden, layers=layers)).numel,
        generator=generator,
        dtype=torch.float64,
    )
    orders = [torch.randperm(hidden, generator=generator) for _ in range(layers)]
    signs = [
        torch.where(torch.rand(hidden, generator=generator) < 0.5, -1.0, 1.0).double()
        for _ in range(layers)
    ]
    copy = permute_units(theta, widths, orders, signs)
    copy[-10:] += 0.7
    loss = digits_loss(digits_mlp(hidden, layers=layers), digits_split())
    assert abs(loss(copy).item() - loss(theta).item()) < 1e-12  # the same function
    assert (copy - theta).norm() > 1.0
    hiddens = [hidden] * layers
    aligned = align(theta, copy, inputs=64, hidden=hiddens, outputs=10, odd_activation=True)
    assert (aligned - theta).norm() < 1e-12
    unsigned = permute_units(theta, widths, orders)
    aligned = align(theta, unsigned, inputs=64, hidden=hiddens, outputs=10, odd_activation=False)
    assert (aligned - theta).norm() < 1e-12
