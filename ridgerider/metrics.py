"""Behavioural metrics of minima: one at a time, in pairs, and as a set."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ridgerider.critical import CriticalPoint
from ridgerider.linalg import (
    HessianOperator,
    gradient_and_hessian,
    hutchinson_trace,
    top_eigenvalue,
)
from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE
from ridgerider.linalg.lanczos import attainable_tol
from ridgerider.problems.base import Problem, class_probabilities, classification_loss

# Two classifiers whose predicted probabilities agree to within this are one function (merged
# by the search, counted once as functionally distinct; measured: 18 minima).
SAME_FUNCTION_TOL = 1e-4

BARRIER_POINTS = 21


def minimum_metrics(problem: Problem, point: CriticalPoint) -> dict[str, float]:
    """Loss, gradient norm, index, sharpness (top eigenvalue), Hessian trace (Hutchinson),
    distance from the start (to the solution's symmetric copy nearest it, where the problem
    declares `align`: a tree-MDP angle taken 2 pi k away is the same policy), the problem's
    own `behaviour` metrics, and, for classifiers, accuracy and loss on every split
    (out-of-distribution ones included) and per-class test accuracy."""
    metrics = {
        "loss": point.loss,
        "grad_norm": point.grad_norm,
        "index": float(point.index),
        **curvature_metrics(problem, point.theta),
    }
    if problem.start is not None:  # to the copy of the solution nearest the start
        theta = point.theta if problem.align is None else problem.align(problem.start, point.theta)
        metrics["distance_from_start"] = (theta - problem.start).norm().item()
    if problem.behaviour is not None:
        metrics |= {name: float(value) for name, value in problem.behaviour(point.theta).items()}
    if problem.predict is None:
        return metrics
    for split, (inputs, labels) in problem.splits.items():
        logits = problem.predict(point.theta, inputs)
        correct = class_probabilities(logits).argmax(1) == labels
        metrics[f"{split}_accuracy"] = correct.double().mean().item()
        metrics[f"{split}_loss"] = classification_loss(logits, labels).item()
        if split == "test":
            for label in labels.unique().tolist():
                accuracy = correct[labels == label].double().mean().item()
                metrics[f"class_{label}_accuracy"] = accuracy
    return metrics


def curvature_metrics(problem: Problem, theta: Tensor) -> dict[str, float]:
    """Sharpness (the top eigenvalue) and the Hessian's trace: exact from the whole Hessian for
    a problem of at most WHOLE_SPACE_SIZE parameters (one Hessian and one eigvalsh: 0.9 against
    6.5 ms for the products at a 127-parameter tree-MDP minimum), else by Lanczos and
    Hutchinson's estimate (32 probes)."""
    if problem.dim <= WHOLE_SPACE_SIZE:
        _, hessian = gradient_and_hessian(problem.loss, theta)
        hessian = hessian.to(torch.float64).cpu()
        top = torch.linalg.eigvalsh(hessian)[-1].item()
        return {"sharpness": top, "hessian_trace": hessian.trace().item()}
    op = HessianOperator(problem.loss, theta)
    return {
        "sharpness": top_eigenvalue(op, tol=attainable_tol(1e-6, theta.dtype)),
        "hessian_trace": hutchinson_trace(op, samples=32).value,
    }


def disagreement(problem: Problem, a: Tensor, b: Tensor, split: str = "test") -> float:
    """The fraction of `split` examples on which the two models predict different classes."""
    inputs, _ = problem.splits[split]
    predicted_a = problem.probabilities(a, inputs).argmax(1)
    predicted_b = problem.probabilities(b, inputs).argmax(1)
    return (predicted_a != predicted_b).double().mean().item()


def loss_barrier(problem: Problem, a: Tensor, b: Tensor) -> float:
    """The highest loss on the straight path from a to b (b aligned to a first) above the
    higher of the two ends: 0 means linearly mode-connected."""
    b = problem.align(a, b) if problem.align else b
    path = [problem.loss(a + t * (b - a)).item() for t in torch.linspace(0, 1, BARRIER_POINTS)]
    return max(path) - max(path[0], path[-1])


def pairwise_metrics(
    problem: Problem, thetas: list[Tensor]
) -> dict[tuple[int, int], dict[str, float]]:
    """Disagreement (for classifiers) and loss barrier for every pair of parameter vectors."""
    pairs = {}
    for i, j in itertools.combinations(range(len(thetas)), 2):
        a, b = thetas[i], thetas[j]
        values = {"loss_barrier": loss_barrier(problem, a, b)}
        if problem.predict is not None and "test" in problem.splits:
            values["disagreement"] = disagreement(problem, a, b)
        pairs[(i, j)] = values
    return pairs


def set_metrics(
    problem: Problem, thetas: list[Tensor], pairs: dict[tuple[int, int], dict[str, float]]
) -> dict[str, float]:
    """Ensemble test accuracy (averaged probabilities), mean pairwise disagreement, and the
    number of functionally distinct solutions (predictions differ from every other's)."""
    metrics: dict[str, float] = {"solutions": float(len(thetas))}
    if problem.predict is None or "test" not in problem.splits or not thetas:
        return metrics
    inputs, labels = problem.splits["test"]
    probabilities = torch.stack([problem.probabilities(theta, inputs) for theta in thetas])
    ensemble = probabilities.mean(0).argmax(1)
    metrics["ensemble_test_accuracy"] = (ensemble == labels).double().mean().item()
    disagreements = [values["disagreement"] for values in pairs.values()]
    metrics["mean_disagreement"] = sum(disagreements) / len(disagreements) if disagreements else 0.0
    distinct = sum(
        not any((p - q).abs().max() < SAME_FUNCTION_TOL for q in probabilities[:i])
        for i, p in enumerate(probabilities)
    )
    metrics["functionally_distinct"] = float(distinct)
    metrics["best_test_accuracy"] = max(
        (p.argmax(1) == labels).double().mean().item() for p in probabilities
    )
    return metrics
