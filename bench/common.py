"""What the benchmarks share: the repository root on the import path, timing loops, markdown
tables, and the baselines' PyTorch initialisation and full-batch Adam.

`python bench/x.py` puts bench/ first on the path, where bench/storage.py and bench/api.py would
hide the packages of those names; importing this module puts the repository root before it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ridgerider.linalg.exact import exact_derivatives
from ridgerider.problems.base import Problem


class Timed(NamedTuple):
    """What a call returned and the seconds it took."""

    value: object
    seconds: float


def timed(work: Callable[..., object], *args: object, **kwargs: object) -> Timed:
    """`work(*args, **kwargs)` and its wall time."""
    started = time.perf_counter()
    value = work(*args, **kwargs)
    return Timed(value, time.perf_counter() - started)


def samples(
    fn: Callable[[], object], repeats: int, device: torch.device | None = None
) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after one unmeasured call that warms caches,
    graphs and query plans; on a CUDA `device` the GPU is synchronised around each call."""
    cuda = device is not None and device.type == "cuda"
    fn()
    seconds = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds


def p50_p99(values: list[float]) -> list[str]:
    """The median and the 99th percentile of `values`, to 0.1 as the tables print them."""
    return [f"{np.percentile(values, q):.1f}" for q in (50, 99)]


def markdown_row(cells: Iterable[object]) -> str:
    """One line of a markdown table."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def print_table(header: list[str], align: str, rows: Iterable[Iterable[object]]) -> None:
    """A markdown table, `align` an "l" or "r" a column; each row printed as it comes."""
    print(markdown_row(header))
    print("|" + "".join("---:|" if a == "r" else "---|" for a in align), flush=True)
    for row in rows:
        print(markdown_row(row), flush=True)


def gradient_seconds(problem: Problem, repeats: int = 50) -> float:
    """Median wall time of one full-batch gradient at the start (the loss's exact one where it
    carries its derivatives, as the search's descents take it): the unit of a
    gradient-equivalent."""
    exact = exact_derivatives(problem.loss)
    gradient = exact.value_and_gradient if exact else torch.func.grad(problem.loss)
    return statistics.median(samples(lambda: gradient(problem.start), repeats, problem.device))


def aligned_distance(problem: Problem, reference: torch.Tensor, theta: torch.Tensor) -> float:
    """How far `theta` lies from `reference` once aligned to it (symmetric copies are one)."""
    aligned = problem.align(reference, theta) if problem.align else theta
    return (aligned - reference).norm().item()


def default_initialisation(problem: Problem, seed: int) -> torch.Tensor:
    """The flat parameters of the problem's module with PyTorch's default initialisation."""
    module = problem.to_module(problem.start)
    torch.manual_seed(seed)
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return problem.place(torch.cat([p.detach().reshape(-1) for p in module.parameters()]))


def adam_from_seeds(
    problem: Problem, seconds: float, steps: int, lr: float = 1e-2, tol: float = 1e-4
) -> list[torch.Tensor]:
    """Full-batch Adam from `default_initialisation` with seeds 0, 1, ..., each run until the
    gradient norm is below `tol` or `steps` steps, for `seconds` (at least one run)."""
    thetas: list[torch.Tensor] = []
    started = time.perf_counter()
    gradient_of = torch.func.grad(problem.loss)
    while not thetas or time.perf_counter() - started < seconds:
        parameter = torch.nn.Parameter(default_initialisation(problem, len(thetas)))
        optimiser = torch.optim.Adam([parameter], lr=lr)
        for _ in range(steps):
            gradient = gradient_of(parameter.detach())
            if gradient.norm() < tol:
                break
            parameter.grad = gradient
            optimiser.step()
        thetas.append(parameter.detach().clone())
    return thetas


def seed_range(text: str) -> list[int]:
    """`--seeds` "N" or "A-B" (inclusive) as a list of seeds."""
    first, _, last = text.partition("-")
    try:
        return list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise SystemExit(f"--seeds must be N or A-B, e.g. 0-2; got {text!r}") from None
