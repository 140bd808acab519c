"""Small problems for tests, loadable by name as `tests.problems:<factory>` (the repository root
is on the path: pytest's rootdir in-process, PYTHONPATH for subprocesses)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ridgerider.problems.base import Problem, module_problem
from ridgerider.problems.classic import himmelblau
from ridgerider.problems.registry import load


def zero_point_classifier(
    name: str, hidden: int, label: Callable[[torch.Tensor], torch.Tensor], weight_decay: float
) -> Problem:
    """A 4-`hidden`-classes tanh classifier of 120 Gaussian points labelled by `label` (80 to
    train on, 40 to test), from its zero point (the output bias at the log class frequencies)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(120, 4, generator=generator, dtype=torch.float64)
    labels = label(inputs)
    classes = int(labels.max()) + 1
    net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, classes)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        net[2].bias.copy_(torch.bincount(labels[:80], minlength=classes).double().log())
    train, test = (inputs[:80], labels[:80]), (inputs[80:], labels[80:])
    return module_problem(
        name, net, F.cross_entropy, train, test=test, weight_decay=weight_decay, zero_modes=1
    )


def tanh_regressor(
    seed: int, hidden: int, start: str | None = None, name: str = "regressor"
) -> tuple[Problem, torch.Tensor]:
    """A 5-`hidden`-1 tanh regressor of a smooth target of three of its inputs (64 Gaussian
    points, data seed `seed`), weight decay 1e-3, from its zero point (the output bias at the
    targets' mean: a saddle whose hidden units are all alike) or `start` ("mis"); and its
    inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    net = nn.Sequential(nn.Linear(5, hidden), nn.Tanh(), nn.Linear(hidden, 1)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        net[2].bias.fill_(y.mean().item())
    return module_problem(name, net, F.mse_loss, (x, y), weight_decay=1e-3, start=start), x


def tiny_net(hidden: int = 3) -> Problem:
    """A 4-hidden-2 tanh classifier from its zero point: fast, with accuracies and predictions."""
    return zero_point_classifier(
        "tiny-net", hidden, lambda x: (x[:, 0] * x[:, 1] > 0).long(), weight_decay=1e-2
    )


def three_class_net() -> Problem:
    """A 4-2-3 classifier (three classes cut by two inputs) whose tree reaches minima that
    predict differently, unlike `tiny_net`'s, which all compute one function."""
    return zero_point_classifier(
        "three-class-net",
        2,
        lambda x: (x[:, 0] > 0.4).long() + (x[:, 1] > 0).long(),
        weight_decay=1e-3,
    )


def western_nan() -> Problem:
    """Himmelblau, NaN left of x = -1.5: the rides towards the two western minima fail."""
    base = himmelblau()

    def loss(theta: torch.Tensor) -> torch.Tensor:
        value = base.loss(theta)
        return torch.where(theta[0] < -1.5, torch.full_like(value, float("nan")), value)

    return Problem("western-nan", loss, 2, base.start)


def off_critical() -> Problem:
    """Himmelblau started where its gradient is not zero."""
    base = himmelblau()
    return Problem("off-critical", base.loss, 2, torch.tensor([1.0, 1.0], dtype=torch.float64))


def slow(name: str = "himmelblau", dim: int = 0, delay: float = 0.003) -> Problem:
    """A built-in problem (`dim` for those that take one) whose loss takes `delay` seconds more
    per call, so that rides last long enough to be interrupted (by a killed worker, a stopped
    broker, a cancel)."""
    base = load(f"{name}:dim={dim}" if dim else name)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        time.sleep(delay)
        return base.loss(theta)

    return Problem(f"slow-{base.name}", loss, base.dim, base.start)


def far_down(name: str = "himmelblau", power: int = -40) -> Problem:
    """A built-in problem whose loss is multiplied by 2**`power`: the same critical points, its
    curvature far below the engine's floors of 1."""
    base = load(name)
    factor = 2.0**power

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return base.loss(theta) * factor

    return Problem(f"{base.name}-times-2^{power}", loss, base.dim, base.start)
