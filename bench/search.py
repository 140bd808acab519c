"""Benchmark: Ridge Rider against what a user would run instead, and the cost of a ride step.

Prints two tables:
1. HVPs per ride step on digits-mlp: tracking (warm start from the ridge and its neighbours,
   at a loose residual and at the search's 1e-10) against a fresh eigsh of the 3 smallest pairs
   at every step of the same path;
2. on digits-mlp (64-8-10 from its zero point), colored-digits (the same with a spurious colour
   input) and the two-hidden-layer digits MLP (64-8-8-10 from its maximally invariant saddle),
   every method gets the same wall-time budget, also given in gradient-equivalents (that time
   over one full-batch gradient's, measured on the problem):
   - Ridge Rider, recursive (the default spec: the tree branches where a ride ends with
     negative curvature left, leaves polished to minima);
   - Ridge Rider, one level (settle = "minimum": every ride's end descends to a minimum);
   - random restarts: PyTorch's default initialisation, polished by L-BFGS then Newton (the
     same polish as Ridge Rider's leaves);
   - Adam from random seeds: the same initialisation, full-batch Adam (lr 1e-2) until the
     gradient norm is below 1e-4 or 3,000 steps, as a user trains.
   Columns: solutions (distinct after aligning symmetric copies), functionally distinct ones
   (predicted probabilities on the test split differ by more than 1e-4 from every other's),
   those per 1,000 gradient-equivalents, mean pairwise disagreement of the functionally
   distinct ones, ensemble test accuracy (averaged probabilities), best test accuracy, best
   out-of-distribution accuracy (colored-digits).

Run: `python bench/search.py` (about 40 minutes on 2 CPU cores; `--seconds` sets each method's
budget, 150 by default; `--quick` runs 30 s budgets on digits-mlp only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import adam_from_seeds, default_initialisation, gradient_seconds, print_table, timed

from ridgerider.critical import SettleConfig, settle_to_minimum
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.tracking import track_eigenvector
from ridgerider.metrics import SAME_FUNCTION_TOL
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.report import run
from ridgerider.ride import RideConfig
from ridgerider.search import SearchSpec
from ridgerider.search.archive import evaluation_probabilities
from ridgerider.search.ridges import canonical_basis

PROBLEMS = ("digits-mlp", "colored-digits", "digits-mlp:layers=2")
ADAM_STEPS = 3_000
COLUMNS = (
    "solutions",
    "functionally distinct",
    "per 1k grad-eq",
    "mean disagreement",
    "ensemble test accuracy",
    "best test accuracy",
    "best OOD accuracy",
)


def ride_step_costs(steps: int = 30) -> dict[str, list[int]]:
    """HVPs each step of a ride costs on digits-mlp from its zero point, along a canonical
    ridge: tracking at a loose residual (1e-3 of ||H||) and at the search's (`RideConfig`'s
    `tracking_tol`, 1e-10, within its product budget), against a fresh eigsh of 3 pairs (1e-3)."""
    problem = load("digits-mlp")
    config = RideConfig()
    start = eigsh(HessianOperator(problem.loss, problem.start), 9)
    group = canonical_basis(start.eigenvectors[:, :8])
    theta, d, neighbours = problem.start, group[:, 0], group[:, 1:3]
    tight_tracking = {"tol": config.tracking_tol, "max_matvecs": config.tracking_matvecs}
    costs: dict[str, list[int]] = {"loose": [], "tight": [], "fresh": []}
    for _ in range(steps):
        theta = theta + 0.05 * d
        op = HessianOperator(problem.loss, theta)
        costs["fresh"].append(eigsh(op, 3, tol=1e-3).info.matvecs)
        loose = track_eigenvector(op, d, neighbours, tol=1e-3, norm_estimate=13.0)
        costs["loose"].append(loose.matvecs)
        tight = track_eigenvector(op, d, neighbours, norm_estimate=13.0, **tight_tracking)
        costs["tight"].append(tight.matvecs)
        d, neighbours = tight.vector, tight.neighbours
    return costs


def restarts(problem: Problem, seconds: float) -> list[torch.Tensor]:
    """Random initialisations polished to minima (L-BFGS, then Newton) until `seconds`."""
    thetas: list[torch.Tensor] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        theta = default_initialisation(problem, seed=len(thetas))
        thetas.append(settle_to_minimum(problem.loss, theta, SettleConfig())[0])
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
        return {"solutions": 0.0, "functionally distinct": 0.0, "per 1k grad-eq": 0.0}
    labels = problem.splits["test"][1]
    chosen = torch.stack([probabilities[i] for i in functional])
    predictions = chosen.argmax(2)
    pairs = [
        (predictions[i] != predictions[j]).double().mean().item()
        for i in range(len(functional))
        for j in range(i)
    ]
    result = {
        "solutions": float(len(distinct)),
        "functionally distinct": float(len(functional)),
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


def _copies(problem: Problem, reference: torch.Tensor, theta: torch.Tensor) -> bool:
    aligned = problem.align(reference, theta) if problem.align else theta
    return (aligned - reference).norm().item() <= 1e-3 * (1 + reference.norm().item())


def ridge_rider(problem: Problem, name: str, seconds: float, **fields) -> tuple[list, int]:
    """The search with a time budget (nodes unbounded): its solutions and rides."""
    report = run(SearchSpec(problem=name, max_nodes=10_000, max_seconds=seconds, **fields), problem)
    rides = report.result.graph.number_of_edges() + len(report.result.failures)
    return [m.point.theta for m in report.minima], rides


def measure(name: str, seconds: float) -> list[list[object]]:
    """Every method on problem `name`, the baselines for the longer of the two searches' time:
    a table row each."""
    problem = load(name)
    per_gradient = gradient_seconds(problem)
    runs = {
        "Ridge Rider, recursive": timed(ridge_rider, problem, name, seconds),
        "Ridge Rider, one level": timed(ridge_rider, problem, name, seconds, settle="minimum"),
    }
    budget = max(r.seconds for r in runs.values())
    runs["random restarts"] = timed(restarts, problem, budget)
    runs["Adam from random seeds"] = timed(adam_from_seeds, problem, budget, ADAM_STEPS)
    rows = []
    for method, r in runs.items():
        # a search counts its rides, a baseline its runs
        thetas, tries = r.value if isinstance(r.value, tuple) else (r.value, len(r.value))
        equivalents = r.seconds / per_gradient
        result = summary(problem, thetas, equivalents)
        cells = [f"{result[c]:.4f}" if c in result else "-" for c in COLUMNS]
        rows.append([name, method, f"{r.seconds:.1f}", f"{equivalents:,.0f}", tries, *cells])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="each method's budget")
    parser.add_argument("--quick", action="store_true", help="30 s budgets, digits-mlp only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds = 30.0 if args.quick else args.seconds
    print(f"# bench/search.py on CPU, torch {torch.__version__}, 1 thread(s)\n")
    costs = ride_step_costs()
    print("HVPs per ride step, digits-mlp (64-8-10 tanh) from the zero point, 30 steps of 0.05\n")
    labels = {
        "loose": "tracking, residual 1e-3",
        "tight": "tracking, residual 1e-10 (the search's default)",
        "fresh": "fresh eigsh, 3 pairs, residual 1e-3",
    }
    print_table(
        ["method", "median", "max"],
        "lrr",
        ([label, f"{statistics.median(costs[k]):g}", max(costs[k])] for k, label in labels.items()),
    )
    print(f"\nEvery method with the same wall time ({seconds:g} s budgets)\n", flush=True)
    print_table(
        ["problem", "method", "seconds", "gradient-equivalents", "rides or runs", *COLUMNS],
        "llrrr" + "r" * len(COLUMNS),
        (row for name in PROBLEMS[: 1 if args.quick else 3] for row in measure(name, seconds)),
    )


if __name__ == "__main__":
    main()
