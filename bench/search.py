"""Benchmark: Ridge Rider search against random restarts, and the cost of a ride step.

Prints two tables:
1. HVPs per ride step on digits-mlp: tracking (warm start from the ridge and its neighbours)
   against a fresh eigsh of the 3 smallest pairs at every step of the same path;
2. the default search against random restarts given the same compute budget and the same
   polish (L-BFGS, then Newton), on digits-mlp and colored-digits: distinct minima (modulo
   hidden-unit symmetry), mean pairwise disagreement, best test and OOD accuracy, ensemble
   accuracy. The budget is the search's wall time, also given in gradient-equivalents (that
   time over the measured time of one full-batch gradient), since the search's work is a mix
   of HVPs, gradients and eigensolver overhead that no count of one kind captures.

Run: `python bench/search.py` (about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.func import grad

from ridgerider.critical import SettleConfig, classify, settle_to_minimum
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.tracking import track_eigenvector
from ridgerider.metrics import pairwise_metrics, set_metrics
from ridgerider.problems.registry import load
from ridgerider.report import run
from ridgerider.search import SearchSpec


def ride_step_costs(steps: int = 30) -> dict[str, float]:
    problem = load("digits-mlp")
    start = eigsh(HessianOperator(problem.loss, problem.start), 3)
    theta, d, neighbours = problem.start, start.eigenvectors[:, 0], start.eigenvectors[:, 1:]
    tracked_costs, fresh_costs = [], []
    for _ in range(steps):
        theta = theta + 0.05 * d
        op = HessianOperator(problem.loss, theta)
        fresh_costs.append(eigsh(op, 3, tol=1e-3).info.matvecs)
        tracked = track_eigenvector(op, d, neighbours, tol=1e-3, norm_estimate=13.0)
        tracked_costs.append(tracked.matvecs)
        d, neighbours = tracked.vector, tracked.neighbours
    return {
        "tracking median": statistics.median(tracked_costs),
        "tracking max": max(tracked_costs),
        "fresh eigsh median": statistics.median(fresh_costs),
        "fresh eigsh max": max(fresh_costs),
    }


def restarts(problem, seconds: float, seed: int = 0):
    """Random initialisations (PyTorch's default scale) polished to minima until `seconds`."""
    generator = torch.Generator().manual_seed(seed)
    points, started, tries = [], time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        tries += 1
        theta = 0.1 * torch.randn(problem.dim, generator=generator, dtype=torch.float64)
        settled, _ = settle_to_minimum(problem.loss, theta, SettleConfig())
        point = classify(problem.loss, settled, zero_modes=problem.zero_modes)
        if point.kind != "minimum":
            continue
        copies = [
            p
            for p in points
            if (problem.align(p.theta, point.theta) - p.theta).norm() <= 1e-3 * (1 + p.theta.norm())
        ]
        if not copies:
            points.append(point)
    return points, tries


def gradient_seconds(problem, repeats: int = 50) -> float:
    """Median wall time of one full-batch gradient at the start."""
    gradient = grad(problem.loss)
    gradient(problem.start)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        gradient(problem.start)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def summary(problem, points) -> dict[str, float]:
    pairs = pairwise_metrics(problem, points)
    metrics = set_metrics(problem, points, pairs)
    if "ood" in problem.splits:
        inputs, labels = problem.splits["ood"]
        metrics["best_ood_accuracy"] = max(
            (problem.predict(p.theta, inputs).argmax(1) == labels).double().mean().item()
            for p in points
        )
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(
        f"# bench/search.py on CPU, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    costs = ride_step_costs()
    print("HVPs per ride step, digits-mlp (64-8-10 tanh) from the zero point, 30 steps of 0.05\n")
    print("| method | median | max |")
    print("|---|---:|---:|")
    print(f"| tracking (ridgerider) | {costs['tracking median']:g} | {costs['tracking max']} |")
    print(
        f"| fresh eigsh, 3 pairs | {costs['fresh eigsh median']:g} | {costs['fresh eigsh max']} |"
    )
    print()
    columns = [
        "solutions",
        "mean_disagreement",
        "best_test_accuracy",
        "best_ood_accuracy",
        "ensemble_test_accuracy",
    ]
    print("Ridge Rider (default spec) against random restarts: same budget, same polish\n")
    print(
        "| problem | method | seconds | gradient-equivalents | rides or restarts | "
        + " | ".join(columns)
        + " |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * len(columns))
    for name in ("digits-mlp", "colored-digits"):
        report = run(SearchSpec(problem=name))
        seconds = report.result.seconds
        rr_points = [m.point for m in report.minima]
        rides = report.result.graph.number_of_edges() + len(report.result.failures)
        rows = [("Ridge Rider", seconds, rides, summary(report.problem, rr_points))]
        started = time.perf_counter()
        points, tries = restarts(report.problem, seconds)
        rows.append(
            (
                "random restarts",
                time.perf_counter() - started,
                tries,
                summary(report.problem, points),
            )
        )
        per_gradient = gradient_seconds(report.problem)
        for method, spent, tries, metrics in rows:
            cells = " | ".join(f"{metrics[c]:.4f}" if c in metrics else "-" for c in columns)
            equivalents = spent / per_gradient
            print(
                f"| {name} | {method} | {spent:.1f} | {equivalents:,.0f} | {tries} | {cells} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
