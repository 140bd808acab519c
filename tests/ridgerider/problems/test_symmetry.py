"""Aligning hidden units recovers a permuted, sign-flipped, shifted copy exactly, and
`module_problem` infers that alignment for an MLP."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ridgerider.flat import FlatLayout
from ridgerider.problems.base import Problem, module_problem
from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split
from ridgerider.problems.symmetry import align, module_align
from ridgerider.search import SearchSpec, search
from ridgerider.search.archive import evaluation_probabilities
from tests.problems import three_class_net, tiny_net
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


def with_a_dead_unit(
    theta: torch.Tensor, bias: float, widths: tuple[int, ...] = (4, 3, 2), layer: int = 0
) -> torch.Tensor:
    """An MLP's `theta` with the second unit of hidden layer `layer` switched off (every weight
    in and out zero) and given `bias`."""
    sizes = [size for i, o in itertools.pairwise(widths) for size in (o * i, o)]
    pieces = [piece.clone() for piece in torch.split(theta, sizes)]
    incoming, biases, outgoing = pieces[2 * layer], pieces[2 * layer + 1], pieces[2 * layer + 2]
    incoming.view(widths[layer + 1], widths[layer])[1] = 0.0
    outgoing.view(widths[layer + 2], widths[layer + 1])[:, 1] = 0.0
    biases[1] = bias
    return torch.cat(pieces)


def test_a_dead_units_bias_is_aligned_where_it_is_a_symmetry():
    """Two points that differ in a dead unit's bias (and are permuted, sign flipped) compute
    one function: with `dead_unit_bias` they align exactly; without it, or where the unit is
    alive in one of them, the bias stays."""
    shape = {"inputs": 4, "hidden": 3, "outputs": 2, "odd_activation": True}
    theta = torch.randn(23, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = with_a_dead_unit(theta, -2.8)
    other = with_a_dead_unit(theta, 4.7)
    orders, signs = [torch.tensor([2, 0, 1])], [torch.tensor([1.0, -1.0, 1.0]).double()]
    copy = permute_units(other, [4, 3, 2], orders, signs)
    assert (align(reference, copy, **shape, dead_unit_bias=True) - reference).norm() < 1e-12
    kept = align(reference, copy, **shape)  # the bias's sign flipped, nearer: -4.7 to -2.8
    assert (kept - reference).norm() == pytest.approx(1.9, abs=1e-12)
    alive = with_a_dead_unit(theta, 4.7)
    alive[4] = 1e-3  # the unit's first incoming weight: it is alive
    aligned = align(reference, alive, **shape, dead_unit_bias=True)
    assert aligned[13].item() == 4.7


def test_a_dead_unit_is_told_by_a_cutoff_its_dtype_sets():
    """A float64 descent under weak decay leaves a dead unit's weights near 2e-7, a float32 one
    near 1e-6: both dead. Weights of 3e-4 are dead in float32 (sqrt(eps): 3.5e-4 of 1 +
    ||theta||) and alive in float64 (`DEAD_WEIGHT`: 1e-5 of it)."""
    theta = torch.randn(23, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    shape = {"inputs": 4, "hidden": 3, "outputs": 2, "odd_activation": False}
    for weight, dead_in_float64 in ((2e-7, True), (1e-6, True), (3e-4, False)):
        reference, other = with_a_dead_unit(theta, -2.8), with_a_dead_unit(theta, 4.7)
        other[4] = reference[4] = weight  # the dead unit's first incoming weight
        single = align(reference.float(), other.float(), **shape, dead_unit_bias=True)
        assert (single - reference.float()).norm() < 1e-6
        double = align(reference, other, **shape, dead_unit_bias=True)
        expected = 0.0 if dead_in_float64 else 7.5
        assert (double - reference).norm() == pytest.approx(expected, abs=1e-12)


def test_a_dead_units_bias_is_aligned_in_a_deeper_hidden_layer():
    widths = (4, 3, 3, 2)
    theta = torch.randn(35, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    reference = with_a_dead_unit(theta, 1.5, widths, layer=1)
    orders = [torch.tensor([1, 2, 0]), torch.tensor([2, 1, 0])]
    signs = [torch.tensor([1.0, 1.0, -1.0]).double(), torch.tensor([-1.0, 1.0, 1.0]).double()]
    copy = permute_units(with_a_dead_unit(theta, -3.0, widths, layer=1), widths, orders, signs)
    shape = {"inputs": 4, "hidden": [3, 3], "outputs": 2, "odd_activation": True}
    assert (align(reference, copy, **shape, dead_unit_bias=True) - reference).norm() < 1e-12
    assert (align(reference, copy, **shape) - reference).norm() > 1.0


def test_module_problem_takes_a_dead_units_bias_as_a_symmetry_only_where_biases_are_free():
    """Weight decay leaves biases free, so a dead unit's bias is flat: the inferred align
    takes it as a symmetry; a loss that also decays the biases is not flat along it."""
    problem = tiny_net()
    assert problem.align.keywords["dead_unit_bias"] is True
    biases = torch.zeros(23, dtype=torch.bool)
    biases[12:15] = biases[21:] = True

    def decayed_biases(theta: torch.Tensor) -> torch.Tensor:
        return problem.loss(theta) + 1e-2 * theta[biases].square().sum()

    module = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    inferred = module_align(module, decayed_biases, problem.start)
    assert inferred.keywords["dead_unit_bias"] is False


def test_a_dead_units_bias_family_is_one_solution_of_a_module_problem():
    """`tiny_net` (decay on weights only) under `max_hvps = 100000`: without the dead unit's
    bias aligned, the search stored 11 minima, 15 pairs of them one function (copies along a
    switched-off unit's bias); with it every minimum computes its own."""
    problem = tiny_net()
    minima = search(problem, SearchSpec(max_hvps=100_000)).points("minimum")
    probabilities = [evaluation_probabilities(problem, point.theta) for point in minima]
    assert len(minima) >= 4
    for first, second in itertools.combinations(probabilities, 2):
        assert (first - second).abs().max() > 1e-4


def tanh_classifier() -> Problem:
    """A 4-5-3 tanh classifier of Gaussian points (softmax cross-entropy, decay on weights)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    labels = inputs[:, :2].argmax(1) + inputs[:, 2].gt(1).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return module_problem("net", net, F.cross_entropy, (inputs, labels), weight_decay=1e-2)


def test_module_problem_infers_an_mlps_symmetries_and_undoes_them_exactly():
    problem = tanh_classifier()
    theta = problem.start
    w1, b1, w2, b2 = torch.split(theta, [20, 5, 15, 3])
    order, signs = torch.tensor([3, 0, 4, 1, 2]), torch.tensor([1.0, -1, -1, 1, 1]).double()
    copy = torch.cat(
        [
            (w1.view(5, 4)[order] * signs[:, None]).reshape(-1),
            b1[order] * signs,
            (w2.view(3, 5)[:, order] * signs).reshape(-1),
            b2 + 0.7,  # softmax cross-entropy ignores a shift of the output bias
        ]
    )
    assert problem.loss(copy).item() == pytest.approx(problem.loss(theta).item(), rel=1e-12)
    assert torch.allclose(problem.align(theta, copy), theta, atol=1e-12, rtol=0)


def test_an_inferred_align_keeps_what_is_no_symmetry_of_the_module_or_loss():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    relu = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 1)).double()
    regressor = module_problem("relu", relu, F.mse_loss, (inputs, inputs[:, :1]))
    assert regressor.align.keywords["odd_activation"] is False  # ReLU(-x) != -ReLU(x)
    assert regressor.align.keywords["shift_output_bias"] is False  # a regressor's outputs move
    unbiased = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Tanh(), nn.Linear(5, 1)).double()
    labels = inputs[:, 0].gt(0).float()[:, None]
    loss = F.binary_cross_entropy_with_logits
    assert module_problem("unbiased", unbiased, loss, (inputs, labels)).align is None
    assert module_problem("linear", nn.Linear(4, 1).double(), loss, (inputs, labels)).align is None


def test_copies_of_one_network_are_one_solution_of_a_module_problem():
    """The 4-2-3 three-class net under `max_nodes = 24`: without the inferred align the
    search stored 15 minima that compute 2 functions; with it every minimum is its own."""
    problem = three_class_net()
    minima = search(problem, SearchSpec(max_nodes=24, max_depth=4)).points("minimum")
    probabilities = [evaluation_probabilities(problem, point.theta) for point in minima]
    assert len(minima) >= 3
    for first, second in itertools.combinations(probabilities, 2):
        assert (first - second).abs().max() > 1e-4
