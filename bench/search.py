"""Benchmark: Ridge Rider against what a user would run instead, and the cost of a ride step.

Prints three tables:
1. the ride steps of real searches: every ride of the default digits-mlp search (the tree
   `make run` grows) and of `mnist-mlp:hidden=16` (its maximally invariant saddle, the default
   network spec within `--mnist-seconds`): HVPs a step (median, 90th percentile, max; tracking
   products of steps retaken shorter included) and the overlap of each step's ridge with the
   previous step's (minimum and 1st percentile), steps a ride and why rides ended;
2. the default digits-mlp search with 1 and with 2 torch threads: the minima each found, and
   how many of the 1-thread minima the 2-thread set holds (rounding moves rides and practical
   leaves; `reproducible = true` takes it out);
3. on digits-mlp (64-8-10 from its zero point), colored-digits (the same with a spurious colour
   input) and the two-hidden-layer digits MLP (64-8-8-10 from its maximally invariant saddle),
   every method gets the wall time recursive Ridge Rider took (the default spec, at most
   `--seconds`), also given in gradient-equivalents (that time over one full-batch gradient's,
   measured on the problem):
   - Ridge Rider, recursive (the default spec: two rides deep, the tree branching where a ride
     ends with negative curvature left, leaves polished to minima);
   - Ridge Rider, one level (settle = "minimum": every ride from the start descends to a
     minimum, as many ridges as the recursive search's time allows);
   - random restarts: PyTorch's default initialisation, polished exactly as Ridge Rider's
     leaves are (L-BFGS until no gradient entry exceeds leaf_tol * max(1, |loss|));
   - Adam from random seeds: the same initialisation, full-batch Adam (lr 1e-2) until the
     gradient norm is below 1e-4 or 3,000 steps, as a user trains.
   Columns: solutions (distinct after aligning symmetric copies), functionally distinct ones
   (predicted probabilities on the test split differ by more than 1e-4 from every other's),
   prediction-distinct ones (of those, the ones whose predicted class differs from every other
   kept one's on at least one test image: a minimum a short hop away from another can differ
   by 1e-4 in probability and in no prediction),
   those per 1,000 gradient-equivalents, mean pairwise disagreement of the functionally
   distinct ones, ensemble test accuracy (averaged probabilities), best test accuracy, best
   out-of-distribution accuracy (colored-digits).

Run: `python bench/search.py` (about 45 minutes on 2 CPU cores; `--seconds` caps each
method's budget, 300 by default; `--quick` runs digits-mlp only, with 30 s on mnist;
`--tables methods --problems colored-digits` prints only the third table, for those problems).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from common import (
    adam_from_seeds,
    aligned_distance,
    default_initialisation,
    gradient_seconds,
    print_table,
    timed,
)

from ridgerider.critical import settle_to_minimum
from ridgerider.metrics import SAME_FUNCTION_TOL
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.report import run
from ridgerider.search import SearchSpec, search
from ridgerider.search.archive import evaluation_probabilities
from ridgerider.search.frontier import Unit
from ridgerider.search.loop import run as run_loop
from ridgerider.search.memory import MemoryTree
from ridgerider.search.steps import Outcome

PROBLEMS = ("digits-mlp", "colored-digits", "digits-mlp:layers=2")
ADAM_STEPS = 3_000
COLUMNS = (
    "solutions",
    "functionally distinct",
    "prediction-distinct",
    "per 1k grad-eq",
    "mean disagreement",
    "ensemble test accuracy",
    "best test accuracy",
    "best OOD accuracy",
)
COUNTS = ("solutions", "functionally distinct", "prediction-distinct")


class RecordingTree(MemoryTree):
    """The tree in memory, keeping every ride's outcome (its steps' products and overlaps)."""

    def __init__(self, problem: Problem, spec: SearchSpec) -> None:
        super().__init__(problem, spec)
        self.outcomes: list[Outcome] = []

    def record_ride(self, unit: Unit, outcome: Outcome) -> list[Unit]:
        self.outcomes.append(outcome)
        return super().record_ride(unit, outcome)


def ride_steps(name: str, spec: SearchSpec) -> list[object]:
    """A table row of the ride steps of the search `spec` on problem `name`."""
    problem = load(name)
    tree = RecordingTree(problem, spec)
    run_loop(tree, problem, spec)
    costs = [c for outcome in tree.outcomes for c in outcome.step_hvps]
    overlaps = sorted(o for outcome in tree.outcomes for o in outcome.overlaps)
    ends = Counter(outcome.end_reason for outcome in tree.outcomes)
    deciles = statistics.quantiles(costs, n=10) if len(costs) > 1 else costs * 9
    return [
        name,
        len(tree.outcomes),
        len(costs),
        f"{statistics.median(costs):g}",
        f"{deciles[-1]:g}",
        max(costs),
        f"{overlaps[0]:.3f}",
        f"{overlaps[len(overlaps) // 100]:.3f}",
        f"{statistics.median(len(o.step_hvps) for o in tree.outcomes):g}",
        ", ".join(f"{reason} {count}" for reason, count in ends.most_common()),
    ]


def thread_counts(name: str) -> list[list[object]]:
    """The default search on `name` with 1 and with 2 torch threads: rows of how many minima
    each found and how many of the 1-thread minima the 2-thread set holds (a copy within the
    merge tolerance after alignment), with the distance of the matched ones."""
    problem = load(name)
    found = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        found[threads] = [p.theta for p in search(problem, SearchSpec()).points("minimum")]
    torch.set_num_threads(1)
    matched = []
    for theta in found[1]:
        nearest = min(aligned_distance(problem, theta, other) for other in found[2])
        if nearest <= 1e-3 * (1 + theta.norm().item()):
            matched.append(nearest)
    return [
        [
            name,
            len(found[1]),
            len(found[2]),
            len(matched),
            f"{statistics.median(matched):.1e}" if matched else "-",
            f"{max(matched):.1e}" if matched else "-",
        ]
    ]


def restarts(problem: Problem, seconds: float) -> list[torch.Tensor]:
    """Random initialisations polished as Ridge Rider's leaves are, until `seconds`."""
    config = SearchSpec().settle_config(problem)
    thetas: list[torch.Tensor] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        theta = default_initialisation(problem, seed=len(thetas))
        thetas.append(settle_to_minimum(problem.loss, theta, config)[0])
    return thetas


def summary(problem: Problem, thetas: list[torch.Tensor], equivalents: float) -> dict[str, float]:
    """The set's distinct solutions and how they behave (see the module doc)."""
    distinct: list[torch.Tensor] = []
    for theta in thetas:
        if not any(_copies(problem, other, theta) for other in distinct):
            distinct.append(theta)
    probabilities = [evaluation_probabilities(problem, theta) for theta in distinct]
    functional: list[int] = []
    for i, p in enumerate(probabilities):
        if all((p - probabilities[j]).abs().max() >= SAME_FUNCTION_TOL for j in functional):
            functional.append(i)
    if not functional:  # a budget that ended before the first solution
        empty = ("solutions", "functionally distinct", "prediction-distinct", "per 1k grad-eq")
        return dict.fromkeys(empty, 0.0)
    labels = problem.splits["test"][1]
    chosen = torch.stack([probabilities[i] for i in functional])
    predictions = chosen.argmax(2)
    by_prediction: list[torch.Tensor] = []
    for predicted in predictions:
        if all((predicted != other).any() for other in by_prediction):
            by_prediction.append(predicted)
    pairs = [
        (predictions[i] != predictions[j]).double().mean().item()
        for i in range(len(functional))
        for j in range(i)
    ]
    result = {
        "solutions": float(len(distinct)),
        "functionally distinct": float(len(functional)),
        "prediction-distinct": float(len(by_prediction)),
        "per 1k grad-eq": 1000 * len(functional) / equivalents,
        "mean disagreement": sum(pairs) / len(pairs) if pairs else 0.0,
        "ensemble test accuracy": (chosen.mean(0).argmax(1) == labels).double().mean().item(),
        "best test accuracy": (predictions == labels).double().mean(1).max().item(),
    }
    if "ood" in problem.splits:
        ood_inputs, ood_labels = problem.splits["ood"]
        result["best OOD accuracy"] = max(
            (problem.predict(distinct[i], ood_inputs).argmax(1) == ood_labels)
            .double()
            .mean()
            .item()
            for i in functional
        )
    return result


def _cell(value: float, count: bool) -> str:
    return f"{value:.0f}" if count else f"{value:.4f}"


def _copies(problem: Problem, reference: torch.Tensor, theta: torch.Tensor) -> bool:
    return aligned_distance(problem, reference, theta) <= 1e-3 * (1 + reference.norm().item())


def ridge_rider(problem: Problem, name: str, seconds: float, **fields) -> tuple[list, int]:
    """The search with the default spec and `fields`, within `seconds`: its solutions and
    rides."""
    report = run(SearchSpec(problem=name, max_seconds=seconds, **fields), problem)
    rides = report.result.graph.number_of_edges() + len(report.result.failures)
    return [m.point.theta for m in report.minima], rides


def measure(name: str, seconds: float) -> list[list[object]]:
    """Every method on problem `name`, the baselines for the longer of the two searches' time:
    a table row each."""
    problem = load(name)
    per_gradient = gradient_seconds(problem)
    recursive = timed(ridge_rider, problem, name, seconds)
    budget = recursive.seconds
    runs = {
        "Ridge Rider, recursive": recursive,
        "Ridge Rider, one level": timed(
            ridge_rider, problem, name, budget, settle="minimum", ridges_per_node=512
        ),
    }
    runs["random restarts"] = timed(restarts, problem, budget)
    runs["Adam from random seeds"] = timed(adam_from_seeds, problem, budget, ADAM_STEPS)
    rows = []
    for method, r in runs.items():
        # a search counts its rides, a baseline its runs
        thetas, tries = r.value if isinstance(r.value, tuple) else (r.value, len(r.value))
        equivalents = r.seconds / per_gradient
        result = summary(problem, thetas, equivalents)
        cells = [_cell(result[c], c in COUNTS) if c in result else "-" for c in COLUMNS]
        rows.append([name, method, f"{r.seconds:.1f}", f"{equivalents:,.0f}", tries, *cells])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="each method's budget cap")
    parser.add_argument(
        "--mnist-seconds", type=float, default=300.0, help="the mnist-mlp search's budget"
    )
    parser.add_argument("--quick", action="store_true", help="digits-mlp only, 30 s on mnist")
    parser.add_argument(
        "--problems",
        default=",".join(PROBLEMS),
        help="the problems of the third table, comma-separated (default: all three)",
    )
    parser.add_argument(
        "--tables",
        default="steps,threads,methods",
        help="which tables to print, comma-separated: steps, threads, methods (default: all)",
    )
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    if not tables <= {"steps", "threads", "methods"}:
        parser.error(f"--tables takes steps, threads and methods, got {args.tables!r}")
    problems = PROBLEMS[:1] if args.quick else tuple(args.problems.split(","))
    torch.set_num_threads(1)
    mnist_seconds = 30.0 if args.quick else args.mnist_seconds
    print(f"# bench/search.py on CPU, torch {torch.__version__}, 1 thread(s)\n")
    if "steps" in tables:
        print_ride_steps(mnist_seconds)
    if "threads" in tables:
        print("\nThe default search with 1 and with 2 torch threads\n")
        print_table(
            [
                "problem",
                "minima, 1 thread",
                "minima, 2 threads",
                "1-thread minima the 2-thread set holds",
                "their median distance",
                "largest",
            ],
            "lrrrrr",
            thread_counts("digits-mlp"),
        )
    if "methods" in tables:
        print(
            f"\nEvery method with recursive Ridge Rider's wall time (at most {args.seconds:g} s)\n"
        )
        print_table(
            ["problem", "method", "seconds", "gradient-equivalents", "rides or runs", *COLUMNS],
            "llrrr" + "r" * len(COLUMNS),
            (row for name in problems for row in measure(name, args.seconds)),
        )


def print_ride_steps(mnist_seconds: float) -> None:
    """The first table: the ride steps of the default digits-mlp search and of mnist-mlp."""
    print("Ride steps of real searches (the default spec; mnist-mlp within its budget)\n")
    print_table(
        [
            "problem",
            "rides",
            "steps",
            "median HVPs a step",
            "90th percentile",
            "max",
            "min overlap",
            "1st percentile overlap",
            "median steps a ride",
            "rides ended by",
        ],
        "lrrrrrrrrl",
        [
            ride_steps("digits-mlp", SearchSpec()),
            ride_steps("mnist-mlp:hidden=16", SearchSpec(max_seconds=mnist_seconds)),
        ],
    )


if __name__ == "__main__":
    main()
