"""One call from a spec to a report: search, then the behavioural metrics of every minimum."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ridgerider.critical import CriticalPoint
from ridgerider.metrics import minimum_metrics, pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchResult, SearchSpec, search

THETA_IN_JSON_MAX_DIM = 100


@dataclass(frozen=True)
class Minimum:
    """A distinct minimum: its node id in the DAG, the point, and its metrics."""

    id: int
    point: CriticalPoint
    metrics: dict[str, float]


@dataclass(frozen=True)
class SearchReport:
    """A finished search with the metrics of its minima, pairs and set."""

    spec: SearchSpec
    problem: Problem
    result: SearchResult
    minima: list[Minimum]
    pairs: dict[tuple[int, int], dict[str, float]]
    set_metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """`minima`, `graph` (nodes and edges), `stats` and `set_metrics`, as plain JSON."""
        graph = self.result.graph
        include_theta = self.problem.dim <= THETA_IN_JSON_MAX_DIM
        minima = []
        for minimum in self.minima:
            entry: dict[str, Any] = {
                "id": minimum.id,
                "loss": minimum.point.loss,
                "grad_norm": minimum.point.grad_norm,
                "index": minimum.point.index,
                "metrics": minimum.metrics,
            }
            if include_theta:
                entry["theta"] = minimum.point.theta.tolist()
            minima.append(entry)
        nodes = [
            {
                "id": node,
                "kind": data["point"].kind,
                "index": data["point"].index,
                "loss": data["point"].loss,
                "grad_norm": data["point"].grad_norm,
                "depth": data["depth"],
            }
            for node, data in graph.nodes(data=True)
        ]
        edges = [{"from": a, "to": b, **labels} for a, b, labels in graph.edges(data=True)]
        return {
            "problem": self.problem.name,
            "spec": self.spec.model_dump(),
            "minima": minima,
            "graph": {"nodes": nodes, "edges": edges},
            "pairs": [
                {"a": self.minima[i].id, "b": self.minima[j].id, **v}
                for (i, j), v in self.pairs.items()
            ],
            "set_metrics": self.set_metrics,
            "stats": {
                "hvps": self.result.hvps,
                "rides": graph.number_of_edges() + len(self.result.failures),
                "failed_rides": len(self.result.failures),
                "nodes": graph.number_of_nodes(),
                "seconds": self.result.seconds,
                "stopped": self.result.stopped,
            },
        }


def run(
    spec: SearchSpec | None = None,
    problem: Problem | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> SearchReport:
    """Search `problem` (default: the one `spec.problem` names) and measure what it found."""
    spec = spec or SearchSpec()
    problem = problem or load(spec.problem)
    result = search(problem, spec, on_event)
    minima = [
        Minimum(node, data["point"], minimum_metrics(problem, data["point"]))
        for node, data in result.graph.nodes(data=True)
        if data["point"].kind == "minimum"
    ]
    points = [m.point for m in minima]
    pairs = pairwise_metrics(problem, points)
    return SearchReport(spec, problem, result, minima, pairs, set_metrics(problem, points, pairs))
