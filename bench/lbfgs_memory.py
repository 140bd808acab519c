"""Benchmark: how many past steps L-BFGS keeps (its memory), on a network leaf's descent.

A network's leaf, and each random restart, is a descent with L-BFGS until no gradient entry
exceeds leaf_tol * max(1, |loss|) (`settle_to_minimum` with the default spec's settle config),
and it is most of what a search costs (a leaf takes 500 to 1,100 loss evaluations on
digits-mlp). On each `--problems` network, from `--count` PyTorch default initialisations,
the same descent with each `--memories` memory (the first is the peer the others are compared
with, in the same run): loss evaluations, seconds, the loss where it ends, and how far its end
lies from the peer's (after aligning symmetric copies): a longer memory should reach the same
minimum for less.

Run: `python bench/lbfgs_memory.py` (about 2 minutes on one core).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from common import aligned_distance, default_initialisation, print_table

from ridgerider.critical import settle_to_minimum
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec


def descent(problem: Problem, theta: torch.Tensor, memory: int) -> tuple[torch.Tensor, int, float]:
    """The leaf descent from `theta` with `memory`: its end, loss evaluations and seconds."""
    evaluations = 0

    def counted(point: torch.Tensor) -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        return problem.loss(point)

    started = time.perf_counter()
    config = replace(SearchSpec().settle_config(problem), memory=memory)
    end, _ = settle_to_minimum(counted, theta, config)
    return end, evaluations, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,colored-digits")
    parser.add_argument("--memories", default="10,30,100,200", help="the first is the peer")
    parser.add_argument("--count", type=int, default=3, help="initialisations a problem")
    args = parser.parse_args()
    torch.set_num_threads(1)
    memories = [int(m) for m in args.memories.split(",")]
    rows = []
    for name in args.problems.split(","):
        problem = load(name)
        runs = {m: [] for m in memories}
        for seed in range(args.count):
            theta = default_initialisation(problem, seed)
            for memory in memories:
                runs[memory].append(descent(problem, theta, memory))
        peers = [end for end, _, _ in runs[memories[0]]]
        for memory in memories:
            ends = [end for end, _, _ in runs[memory]]
            farthest = max(
                aligned_distance(problem, p, e) for p, e in zip(peers, ends, strict=True)
            )
            rows.append(
                [
                    name,
                    memory,
                    f"{statistics.median(e for _, e, _ in runs[memory]):.0f}",
                    f"{statistics.median(s for _, _, s in runs[memory]):.2f}",
                    f"{statistics.mean(problem.loss(end).item() for end in ends):.6f}",
                    f"{farthest:.1e}",
                ]
            )
            print(f"  {name}, memory {memory}: {rows[-1][2:4]}", flush=True)
    print(f"\nLeaf descents from {args.count} default initialisations a problem (one thread)\n")
    header = ["problem", "memory", "median evaluations", "median seconds", "mean final loss"]
    print_table([*header, "largest distance to the peer's end"], "lrrrrr", rows)


if __name__ == "__main__":
    main()
