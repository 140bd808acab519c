"""The whole search on the digits MLP, and reports of it (known answers, real autograd)."""

from __future__ import annotations

import json

import pytest
import torch

from ridgerider.problems.registry import load
from ridgerider.report import run
from ridgerider.search import SearchSpec


@pytest.fixture(scope="module")
def digits_report():
    """One ride deep (each ride's end descends to a minimum): the minima and their metrics."""
    return run(SearchSpec(problem="digits-mlp:hidden=8", ridges_per_node=6, settle="minimum"))


def test_digits_mlp_from_the_zero_point_finds_distinct_accurate_minima(digits_report):
    minima, problem = digits_report.minima, digits_report.problem
    # six rides; the descents from two of their ends may meet in one basin (L-BFGS with a
    # memory of 100 joins the ends of ridges 8 and 24 on this CPU)
    assert len(minima) >= 5
    for minimum in minima:
        assert minimum.point.kind == "minimum" and minimum.point.index == 0
        assert minimum.point.grad_norm < digits_report.spec.leaf_tol * 2.5 * problem.dim**0.5
        assert minimum.metrics["train_accuracy"] >= 0.95
        assert 0 < minimum.metrics["sharpness"] < 100
        counts = torch.bincount(digits_report.problem.splits["test"][1]).double()
        per_class = torch.tensor(
            [minimum.metrics[f"class_{c}_accuracy"] for c in range(10)], dtype=torch.float64
        )
        overall = (per_class * counts).sum() / counts.sum()
        assert overall.item() == pytest.approx(minimum.metrics["test_accuracy"], abs=1e-12)
    # Distinct modulo symmetry: no two are within the merge tolerance after alignment ...
    for i, a in enumerate(minima):
        for b in minima[:i]:
            aligned = problem.align(a.point.theta, b.point.theta)
            assert (aligned - a.point.theta).norm() > 1e-3 * (1 + a.point.theta.norm())
    # ... and they behave differently.
    assert digits_report.set_metrics["functionally_distinct"] == len(minima)
    assert digits_report.set_metrics["mean_disagreement"] > 0


def test_the_two_signs_of_a_zero_point_ridge_are_ridden_once(digits_report):
    """KNOWN-ANSWERS.md: the + and - rides of one ridge from the zero point end in the same
    function. Their first steps are already symmetric copies (a unit's weights in and out
    negated), so each ridge is ridden one way only (`ridges.drop_mirrored`)."""
    graph = digits_report.result.graph
    signs: dict[int, list[int]] = {}
    for _, _, labels in graph.out_edges(0, data=True):
        signs.setdefault(labels["eigen_index"], []).append(labels["sign"])
    assert len(signs) == 6 and all(taken == [1] for taken in signs.values())


def test_report_json_has_minima_graph_and_stats():
    report = run(SearchSpec(problem="himmelblau"))
    data = json.loads(json.dumps(report.to_json()))
    assert len(data["minima"]) == 4
    assert all(len(m["theta"]) == 2 and m["index"] == 0 for m in data["minima"])
    assert {"loss", "sharpness", "hessian_trace", "distance_from_start"} <= set(
        data["minima"][0]["metrics"]
    )
    # Every critical point (KNOWN-ANSWERS.md): the maximum's 4 rides, 2 from each of the 4
    # saddles, and from each minimum 2 climbs along each of its 2 eigenvectors.
    assert len(data["graph"]["nodes"]) == 9 and len(data["graph"]["edges"]) == 4 + 8 + 16
    assert data["stats"]["rides"] == 28 and data["stats"]["hvps"] > 0
    assert data["spec"]["problem"] == "himmelblau"


def test_a_small_problems_sharpness_and_trace_are_exact():
    """At most 128 parameters: from the whole Hessian, not Lanczos and Hutchinson."""
    report = run(SearchSpec(problem="himmelblau"))
    problem = load("himmelblau")
    for minimum in report.minima:
        dense = torch.func.hessian(problem.loss)(minimum.point.theta)
        assert minimum.metrics["hessian_trace"] == pytest.approx(dense.trace().item(), rel=1e-12)
        top = torch.linalg.eigvalsh(dense)[-1].item()
        assert minimum.metrics["sharpness"] == pytest.approx(top, rel=1e-12)


def test_a_networks_sharpness_and_trace_are_estimated_from_products(digits_report):
    """digits-mlp:hidden=8 (610 parameters): sharpness by Lanczos to 1e-6 of ||H||, the trace
    by Hutchinson's estimate from 32 probes, both against the dense Hessian."""
    loss = digits_report.problem.loss
    for minimum in digits_report.minima[:2]:
        dense = torch.func.hessian(loss)(minimum.point.theta)
        top = torch.linalg.eigvalsh(dense)[-1].item()
        assert minimum.metrics["sharpness"] == pytest.approx(top, rel=1e-5)
        assert minimum.metrics["hessian_trace"] == pytest.approx(dense.trace().item(), rel=0.25)


def test_digits_mlp_from_the_symmetric_saddle_finds_distinct_accurate_minima():
    """The all-units-equal saddle (KNOWN-ANSWERS.md: loss 1.3696, 20 values x 7 negative)."""
    spec = SearchSpec(
        problem="digits-mlp:hidden=8,start=saddle", ridges_per_node=4, settle="minimum"
    )
    report = run(spec)
    root = report.result.graph.nodes[0]["point"]
    assert root.loss == pytest.approx(1.3696, abs=1e-4)
    assert torch.allclose(root.eigenvalues[:7], torch.full((7,), -0.2117).double(), atol=1e-4)
    assert len(report.minima) >= 6
    assert all(m.metrics["train_accuracy"] >= 0.95 for m in report.minima)
    assert report.set_metrics["functionally_distinct"] == len(report.minima)
