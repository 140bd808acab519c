"""Benchmark: one network search on the CPU and on CUDA, the same spec and time budget.

For each problem, the default search spec capped at `--seconds`, run in process with the problem
built on the CPU and with `device=cuda`; one table: parameters, one gradient's and one HVP's
time (median of 20), the search's wall seconds, HVPs (and per second), rides, minima,
functionally distinct minima and the best test accuracy among them (as `bench/search.py`
counts them). The CPU row uses every core torch is given (`--threads`, all by default).

Run: `python bench/cuda_search.py` on a machine with CUDA (`--problems` and `--seconds` to
change what runs; about 2 x 2 x `--seconds` in all).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import gradient_seconds, print_table, samples
from search import summary

from ridgerider.linalg import HessianOperator
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search

PROBLEMS = ("mnist-mlp", "mnist-mlp:hidden=128")


def on(name: str, device: str) -> str:
    """`name` with `device=...` added to its arguments."""
    return f"{name}{',' if ':' in name else ':'}device={device}"


def unit_costs(problem: Problem) -> tuple[float, float]:
    """One gradient's and one Hessian-vector product's time at the start, in ms (medians of
    20, the GPU synchronised around each)."""
    vector = torch.ones_like(problem.start) / problem.dim**0.5
    operator = HessianOperator(problem.loss, problem.start)
    hvp = statistics.median(samples(lambda: operator.matvec(vector), 20, problem.device))
    return 1000 * gradient_seconds(problem, 20), 1000 * hvp


def row(name: str, device: str, seconds: float) -> list[object]:
    problem = load(on(name, device))
    gradient_ms, hvp_ms = unit_costs(problem)
    started = time.perf_counter()
    result = search(problem, SearchSpec(problem=on(name, device), max_seconds=seconds))
    wall = time.perf_counter() - started
    minima = [point.theta for point in result.points("minimum")]
    found = summary(problem, minima, 1.0)
    return [
        name,
        device,
        problem.dim,
        f"{gradient_ms:.2f}",
        f"{hvp_ms:.2f}",
        f"{wall:.1f}",
        result.hvps,
        f"{result.hvps / wall:.0f}",
        result.graph.number_of_edges() + len(result.failures),
        len(minima),
        int(found["functionally distinct"]),
        f"{found.get('best test accuracy', 0.0):.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--seconds", type=float, default=60.0, help="each search's budget")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/cuda_search.py needs a CUDA device (torch sees none here)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# bench/cuda_search.py: {torch.cuda.get_device_name()} against the CPU "
        f"({torch.get_num_threads()} torch threads), torch {torch.__version__}, "
        f"{args.seconds:g} s a search\n"
    )
    header = [
        "problem",
        "device",
        "params",
        "gradient ms",
        "HVP ms",
        "seconds",
        "HVPs",
        "HVPs/s",
        "rides",
        "minima",
        "functionally distinct",
        "best test acc",
    ]
    rows = []
    for name in args.problems:
        for device in ("cuda", "cpu"):
            rows.append(row(name, device, args.seconds))
            print(rows[-1], flush=True)
    print()
    print_table(header, "llrrrrrrrrrr", rows)


if __name__ == "__main__":
    main()
