"""The maximally invariant saddle (MIS) of an MLP: critical in the full space, with the Hessian
eigenvalue multiplicities that the hidden-unit permutations predict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ridgerider.flat import FlatLayout, module_loss
from ridgerider.problems.base import Problem, module_problem
from ridgerider.problems.invariant import (
    InvariantLayout,
    SymmetryBlock,
    invariant_layout,
    maximally_invariant_point,
)
from ridgerider.problems.registry import load
from tests.ridgerider.problems.units import permute_units

Character = Callable[[Sequence[int]], int]


def trivial(order: Sequence[int]) -> int:
    return 1


def standard(order: Sequence[int]) -> int:
    """The character of S_n's standard representation: fixed points - 1."""
    return sum(i == j for i, j in enumerate(order)) - 1


def tiny_net(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)
    ).to(dtype)


def tiny_data() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    return inputs, torch.tanh(inputs @ torch.randn(5, 3, generator=generator, dtype=torch.float64))


@pytest.fixture(scope="module")
def tiny() -> Problem:
    """A 5-4-3-3 tanh regression net (mean squared error, weight decay) from its MIS."""
    return module_problem(
        "tiny", tiny_net(), F.mse_loss, tiny_data(), start="mis", weight_decay=1e-3
    )


def test_a_float32_module_s_mis_is_the_float64_one_rounded_and_symmetric(tiny: Problem):
    """A float32 module's MIS comes from a float64 copy of it and of its (float32) data, then
    rounded: the float64 module's MIS to float32's accuracy, the units of each hidden layer
    still identical, and the float32 gradient there is rounding."""
    inputs, targets = tiny_data()
    net = tiny_net(torch.float32)
    problem = module_problem(
        "tiny", net, F.mse_loss, (inputs.float(), targets.float()), start="mis", weight_decay=1e-3
    )
    assert problem.start.dtype == torch.float32
    torch.testing.assert_close(problem.start, tiny.start.float(), rtol=1e-5, atol=1e-6)
    for order in itertools.permutations(range(4)):
        swapped = permute_units(problem.start, (5, 4, 3, 3), [torch.tensor(order), torch.arange(3)])
        assert torch.equal(swapped, problem.start)
    gradient = torch.func.grad(problem.loss)(problem.start).norm().item()
    assert gradient <= 8 * torch.finfo(torch.float32).eps * (1 + problem.start.norm().item())


def test_layout_and_predicted_blocks_of_a_two_hidden_layer_net():
    net = tiny_net()
    layout = invariant_layout(net)
    assert layout == InvariantLayout((5, 4, 3, 3), (True, True, True))
    assert layout.numel == FlatLayout.of(net).numel == 51
    assert layout.reduced_numel == 14  # 5 weights + bias | weight + bias | 3 weights + 3 biases
    assert layout.symmetry_blocks() == (
        SymmetryBlock("trivial", 1, 14),
        SymmetryBlock("standard(1)", 3, 7),  # 5 incoming, bias, 1 outgoing
        SymmetryBlock("standard(2)", 2, 5),  # 1 incoming, bias, 3 outgoing
        SymmetryBlock("standard(1) x standard(2)", 6, 1),
    )


def test_any_parameter_free_activations_and_missing_biases_are_understood():
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(5, 4, bias=False),
        nn.Sigmoid(),
        nn.Dropout(0.5),
        nn.Linear(4, 3),
        nn.GELU(),
        nn.Softmax(dim=-1),
        nn.Linear(3, 2),
        nn.LogSoftmax(dim=-1),
    )
    layout = invariant_layout(net)
    assert layout == InvariantLayout((5, 4, 3, 2), (False, True, True))
    assert layout.numel == FlatLayout.of(net).numel
    assert layout.reduced_numel == 5 + 0 + 2 + 4
    blocks = layout.symmetry_blocks()
    assert sum(block.multiplicity * block.count for block in blocks) == layout.numel


def test_an_embedded_point_is_fixed_by_every_permutation_and_shares_its_weights():
    layout = invariant_layout(tiny_net())
    generator = torch.Generator().manual_seed(1)
    reduced = torch.randn(14, generator=generator, dtype=torch.float64)
    theta = layout.embed(reduced)
    params = FlatLayout.of(tiny_net()).unflatten(theta)
    assert torch.equal(params["0.weight"], reduced[:5].expand(4, 5))
    assert torch.equal(params["0.bias"], reduced[5].expand(4))
    assert torch.equal(params["2.weight"], reduced[6].expand(3, 4))
    assert torch.equal(params["2.bias"], reduced[7].expand(3))
    assert torch.equal(params["4.weight"], reduced[8:11, None].expand(3, 3))
    assert torch.equal(params["4.bias"], reduced[11:])
    for _ in range(5):
        orders = [torch.randperm(width, generator=generator) for width in layout.hidden]
        assert torch.equal(permute_units(theta, layout.widths, orders), theta)


def isotypic_projector(layout: InvariantLayout, characters: Sequence[Character]) -> Tensor:
    """dim / |G| * sum over G of chi(g) g, for the irreducible representation of
    G = S_{H_1} x S_{H_2} whose character is the product of `characters`."""
    position = torch.arange(layout.numel, dtype=torch.float64)
    identity = torch.eye(layout.numel, dtype=torch.float64)
    projector = torch.zeros_like(identity)
    elements = itertools.product(*(itertools.permutations(range(h)) for h in layout.hidden))
    for orders in elements:
        chi = math.prod(c(order) for c, order in zip(characters, orders, strict=True))
        moved = permute_units(position, layout.widths, [torch.tensor(o) for o in orders])
        projector += chi * identity[moved.long()]
    group_order = math.prod(math.factorial(h) for h in layout.hidden)
    dimension = math.prod(c(range(h)) for c, h in zip(characters, layout.hidden, strict=True))
    return projector * dimension / group_order


def test_the_tiny_mis_is_critical_and_its_hessian_splits_as_the_symmetry_predicts(tiny):
    gradient, value = torch.func.grad_and_value(tiny.loss)(tiny.start)
    assert gradient.norm() <= 1e-8 * max(1.0, value.item())
    hessian = torch.func.hessian(tiny.loss)(tiny.start)
    layout = invariant_layout(tiny_net())
    characters = [
        (trivial, trivial),
        (standard, trivial),
        (trivial, standard),
        (standard, standard),
    ]
    negative = {}
    for block, chars in zip(layout.symmetry_blocks(), characters, strict=True):
        projector = isotypic_projector(layout, chars)
        assert torch.allclose(projector @ hessian, hessian @ projector, atol=1e-12)
        weights, vectors = torch.linalg.eigh(projector)
        basis = vectors[:, weights > 0.5]
        assert basis.shape[1] == block.multiplicity * block.count
        values = torch.linalg.eigvalsh(basis.T @ hessian @ basis).view(block.count, -1)
        # each of the `count` distinct eigenvalues repeats `multiplicity` times
        assert (values - values[:, :1]).abs().max() < 1e-12
        negative[block.representation] = int((values[:, 0] < -1e-9).sum())
    # a minimum inside the fixed subspace: negative curvature only across it, in copies of 3 and 2
    assert negative == {
        "trivial": 0,
        "standard(1)": 2,
        "standard(2)": 2,
        "standard(1) x standard(2)": 0,
    }
    spectrum = torch.linalg.eigvalsh(hessian)
    assert (spectrum < -1e-9).sum() == 2 * 3 + 2 * 2


def test_a_loss_that_is_not_permutation_invariant_gives_no_critical_point():
    net = tiny_net()
    data_loss, _ = module_loss(net, F.mse_loss, [tiny_data()])
    tilt = torch.randn(51, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(theta: Tensor) -> Tensor:
        return data_loss(theta) + 1e-2 * theta.square().sum() + 1e-2 * tilt @ theta

    with pytest.raises(ValueError, match=r"not critical: gradient norm \d"):
        maximally_invariant_point(net, loss)


def test_a_deep_narrow_tanh_mlp_has_a_mis_below_the_constant_predictor():
    """64-3-3-3-3-10: from the usual small start the reduced minimisation stalls near zero,
    where the loss is flat to high order, short of a critical point; from further out it
    reaches one, below ln 10 (every unit still in use)."""
    problem = load("digits-mlp:hidden=3,layers=4")
    gradient = torch.func.grad(problem.loss)(problem.start)
    assert gradient.norm() <= 1e-8 * max(1.0, problem.loss(problem.start).item())
    assert problem.loss(problem.start).item() < math.log(10) - 0.5


class Cumsum(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.cumsum(-1)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Linear(5, 3), r"needs an nn.Sequential .* got Linear"),
        (nn.Sequential(nn.Linear(5, 3), nn.Tanh()), r"needs a hidden layer .* got 1"),
        (
            nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3)),
            r"module '1' \(LayerNorm\) has parameters",
        ),
        (
            nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 3)),
            r"module '1' \(BatchNorm1d\) between Linear layers holds buffers",
        ),
        (
            nn.Sequential(nn.Linear(5, 4), Cumsum(), nn.Linear(4, 3)),
            r"module '1' \(Cumsum\) between Linear layers is not an elementwise activation",
        ),
    ],
)
def test_a_module_that_is_no_mlp_has_no_mis(module, message):
    with pytest.raises(ValueError, match=message):
        module_problem("net", module.double(), F.mse_loss, tiny_data(), start="mis")


def test_module_problem_start_must_be_a_tensor_none_or_mis_and_of_its_dtype():
    with pytest.raises(ValueError, match='start must be a flat tensor, None or "mis"'):
        module_problem("net", tiny_net(), F.mse_loss, tiny_data(), start="zero")
    net = tiny_net()
    with pytest.raises(ValueError, match=r"start must have the module's dtype \(torch.float64\)"):
        module_problem("net", net, F.mse_loss, tiny_data(), start=torch.zeros(51))
