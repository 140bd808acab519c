"""Known answers with the loss scaled far down: each problem searched at scale 1 and at
powers of two below, in one run: minima, how many are false (a negative eigenvalue below
-1e-6 ||H|| in the dense Hessian there), time and why the search stopped.

The engine's tolerances floor at 1 in the loss's units; a loss whose curvature at the start is
below 1/32 is searched in the engine's units (`ridgerider/search/scale.py`). Problems:
Himmelblau (2 parameters, the default spec: 4 minima), 100 double wells of curvatures 1 to 1.1
from their maximum at zero (the dense path, `--seconds` a search: 2^100 minima), and a deep
linear network 0.5 ||Y - W2 W1 X||^2 / N, 10-7-10 (140 parameters, the Lanczos path, from
zero, `--nodes` points: every minimum global).

    python bench/loss_scale.py [--powers 0,-10,-20,-40] [--nodes 12] [--seconds 20]
"""

from __future__ import annotations

import argparse

import torch
from common import print_table, timed

from ridgerider.linalg import gradient_and_hessian
from ridgerider.problems.base import Problem
from ridgerider.problems.classic import himmelblau
from ridgerider.search import SearchSpec, search


def scaled(problem: Problem, power: int) -> Problem:
    """`problem` with its loss times 2**`power`."""
    factor = 2.0**power

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return problem.loss(theta) * factor

    return Problem(problem.name, loss, problem.dim, problem.start)


def double_wells(n: int = 100) -> Problem:
    """sum_i w_i (x_i^2 - 1)^2, w from 1 to 1.1, from its maximum at zero."""
    weights = 1 + 0.1 * torch.arange(n, dtype=torch.float64) / n

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return (weights * (theta.square() - 1).square()).sum()

    return Problem(f"double-wells-{n}", loss, n, torch.zeros(n, dtype=torch.float64))


def deep_linear() -> Problem:
    """The 10-7-10 deep linear network on 30 Gaussian inputs, from zero."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(10, 30, dtype=torch.float64, generator=generator)
    targets = torch.randn(10, 10, dtype=torch.float64, generator=generator) @ inputs

    def loss(theta: torch.Tensor) -> torch.Tensor:
        first, second = theta[:70].reshape(7, 10), theta[70:].reshape(10, 7)
        return 0.5 * (targets - second @ first @ inputs).square().sum() / inputs.shape[1]

    return Problem("deep-linear-140", loss, 140, torch.zeros(140, dtype=torch.float64))


def false_minima(problem: Problem, minima: list) -> int:
    """How many of `minima` have an eigenvalue below -1e-6 ||H|| (dense Hessian)."""
    count = 0
    for point in minima:
        _, hessian = gradient_and_hessian(problem.loss, point.theta)
        values = torch.linalg.eigvalsh(hessian)
        count += bool(values[0] < -1e-6 * values.abs().max())
    return count


def row(problem: Problem, power: int, spec: SearchSpec) -> list[object]:
    """One search of `problem` scaled by 2**`power`, as a table row."""
    problem = scaled(problem, power)
    run = timed(search, problem, spec)
    result = run.value
    minima = result.points("minimum")
    return [
        problem.name,
        f"2^{power}",
        len(minima),
        false_minima(problem, minima),
        f"{run.seconds:.1f}",
        result.stopped,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--powers", default="0,-10,-20,-40", help="powers of two to scale by")
    parser.add_argument("--nodes", type=int, default=12, help="the deep linear network's budget")
    parser.add_argument("--seconds", type=float, default=20.0, help="the double wells' budget")
    args = parser.parse_args()
    torch.set_num_threads(1)
    powers = [int(power) for power in args.powers.split(",")]
    problems = [
        (himmelblau(), SearchSpec()),
        (double_wells(), SearchSpec(max_seconds=args.seconds)),
        (deep_linear(), SearchSpec(max_nodes=args.nodes)),
    ]
    print_table(
        ["problem", "loss times", "minima", "false minima", "seconds", "stopped"],
        "llrrrl",
        (row(problem, power, spec) for problem, spec in problems for power in powers),
    )


if __name__ == "__main__":
    main()
