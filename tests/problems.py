"""Small problems for tests, loadable by name as `tests.problems:<factory>` (the repository root
is on the path: pytest's rootdir in-process, PYTHONPATH for subprocesses)."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from ridgerider.problems.base import Problem, module_problem
from ridgerider.problems.classic import himmelblau
from ridgerider.problems.registry import load


def tiny_net(hidden: int = 3) -> Problem:
    """A 4-hidden-2 tanh classifier from its zero point: fast, with accuracies and predictions."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(120, 4, generator=generator, dtype=torch.float64)
    labels = (inputs[:, 0] * inputs[:, 1] > 0).long()
    net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        net[2].bias.copy_(torch.bincount(labels[:80], minlength=2).double().log())
    train, test = (inputs[:80], labels[:80]), (inputs[80:], labels[80:])
    return module_problem(
        "tiny-net", net, F.cross_entropy, train, test=test, weight_decay=1e-2, zero_modes=1
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
