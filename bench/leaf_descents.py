"""Benchmark: what a network leaf's descent costs from where Ridge Rider's rides end, against a
random restart's descent from PyTorch's initialisation.

On `--problem` (digits-mlp by default), the default search with `leaf = "ride-end"` (the tree
`make run` grows, its ride ends kept as they are) for `--seconds`; then the descent that
polishes a network's leaf (`settle_to_minimum` with the default spec's settle config: L-BFGS
until no gradient entry exceeds leaf_tol * max(1, |loss|)) from the first `--count` ride ends,
and from `--count` random initialisations, which random restarts polish the same way. One row
each: the loss where it starts and ends, the loss evaluations in all, and the evaluations until
the loss is within 10 % and 1 % of where it ends. Then the medians of both groups. Ridge Rider
finds more minima than restarts for the same compute only if its leaves' descents cost less
than this.

Run: `python bench/leaf_descents.py` (about 2 minutes on one core).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import default_initialisation, print_table
from torch import Tensor

from ridgerider.critical import settle_to_minimum
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search


def descent(problem: Problem, theta: Tensor) -> list[float]:
    """The loss at every evaluation of the leaf descent from `theta`."""
    values: list[float] = []

    def counted(point: Tensor) -> Tensor:
        value = problem.loss(point)
        values.append(value.item())
        return value

    settle_to_minimum(counted, theta, SearchSpec().settle_config(problem))
    return values


def row(label: str, values: list[float]) -> list[object]:
    final = values[-1]

    def within(share: float) -> int:
        return next(i for i, v in enumerate(values) if v - final <= share * abs(final))

    return [label, f"{values[0]:.4f}", f"{final:.4f}", len(values), within(0.1), within(0.01)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--seconds", type=float, default=40.0, help="the search's budget")
    parser.add_argument("--count", type=int, default=8, help="descents from each kind of start")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = load(args.problem)
    result = search(
        problem, SearchSpec(problem=args.problem, leaf="ride-end", max_seconds=args.seconds)
    )
    ends = result.points("ride-end")[: args.count]
    rows = [
        row(f"ride end {i} (index {p.index})", descent(problem, p.theta))
        for i, p in enumerate(ends)
    ]
    rows += [
        row(f"restart {seed}", descent(problem, default_initialisation(problem, seed)))
        for seed in range(args.count)
    ]
    header = ["start", "loss there", "loss at the end", "evaluations", "to 10 %", "to 1 %"]
    print(f"# {args.problem}: leaf descents from {len(ends)} ride ends and {args.count} restarts\n")
    print_table(header, "lrrrrr", rows)
    print()
    groups = {"ride ends": rows[: len(ends)], "restarts": rows[len(ends) :]}
    print_table(
        [
            "starts",
            "count",
            "median loss there",
            "median evaluations",
            "median to 10 %",
            "median to 1 %",
        ],
        "lrrrrr",
        [
            [
                name,
                len(group),
                f"{statistics.median(float(r[1]) for r in group):.4f}",
                statistics.median(r[3] for r in group),
                statistics.median(r[4] for r in group),
                statistics.median(r[5] for r in group),
            ]
            for name, group in groups.items()
        ],
    )


if __name__ == "__main__":
    main()
