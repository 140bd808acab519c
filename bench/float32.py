"""A float32 search against the same search in float64, in one run: time, minima, failed
rides, and how far the minima's losses lie from the best the problem allows.

Two problems of more than 128 parameters (the Lanczos path): a tanh network on digits (8 hidden
units, 610 parameters, from its maximally invariant saddle) and a deep linear network
0.5 ||Y - X W1^T W2^T||^2 + 1e-3 (||W1||^2 + ||W2||^2) (12 inputs, 6 hidden units, 12 outputs,
144 parameters, from zero), whose minima all lie at one loss.

    python bench/float32.py [--nodes 12]
"""

from __future__ import annotations

import argparse

import torch
from common import print_table, timed
from torch import nn

from ridgerider.problems.base import Problem, module_problem
from ridgerider.problems.digits import digits_split
from ridgerider.search import SearchSpec, search


def digits_network(dtype: torch.dtype) -> Problem:
    """The tanh network on digits, from its maximally invariant saddle."""
    data = digits_split(0, dtype=dtype)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)).to(dtype)
    return module_problem(
        "digits-tanh-8",
        network,
        nn.functional.cross_entropy,
        (data.x_train, data.y_train),
        start="mis",
        zero_modes=1,
        weight_decay=1e-3,
    )


def deep_linear(dtype: torch.dtype) -> Problem:
    """The deep linear network, from zero (a saddle)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 12, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(12, 12, generator=generator, dtype=torch.float64)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(12, 6, bias=False), nn.Linear(6, 12, bias=False)).to(dtype)
    return module_problem(
        "deep-linear",
        network,
        lambda out, target: 0.5 * (out - target).square().sum(1).mean(),
        (x.to(dtype), y.to(dtype)),
        start=torch.zeros(144, dtype=dtype),
        zero_modes=15,
        weight_decay=1e-3,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=12, help="each search's node budget")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_table(
        [
            "problem",
            "dtype",
            "seconds",
            "minima",
            "failed rides",
            "lowest loss",
            "highest loss",
            "stopped",
        ],
        "llrrrrrl",
        (
            row(build(dtype), args.nodes)
            for build in (digits_network, deep_linear)
            for dtype in (torch.float64, torch.float32)
        ),
    )


def row(problem: Problem, nodes: int) -> list[object]:
    """One search of `problem` under a budget of `nodes` points, as a table row."""
    run = timed(search, problem, SearchSpec(max_nodes=nodes, seed=0))
    result = run.value
    losses = [point.loss for point in result.points("minimum")]
    return [
        problem.name,
        str(problem.start.dtype).removeprefix("torch."),
        f"{run.seconds:.1f}",
        len(losses),
        len(result.failures),
        f"{min(losses):.6f}" if losses else "-",
        f"{max(losses):.6f}" if losses else "-",
        result.stopped,
    ]


if __name__ == "__main__":
    main()
