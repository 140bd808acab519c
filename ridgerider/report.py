"""One call from a spec to a report: search, then the metrics of the set, as JSON in the shapes
a stored job's document shares (`ridgerider.json_shapes`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ridgerider.critical import SOLUTION_KINDS, CriticalPoint
from ridgerider.json_shapes import node_json, ride_json, solution_json
from ridgerider.metrics import pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchResult, SearchSpec, search
from ridgerider.search.budget import Progress
from ridgerider.search.fingerprint import to_text


@dataclass(frozen=True)
class Minimum:
    """A distinct solution (a minimum, or a ride's end kept as a leaf): its node id in the DAG,
    the point, and its metrics."""

    id: int
    point: CriticalPoint
    metrics: dict[str, float]


@dataclass(frozen=True)
class SearchReport:
    """A finished search with the metrics of its solutions, pairs and set."""

    spec: SearchSpec
    problem: Problem
    result: SearchResult
    minima: list[Minimum]
    pairs: dict[tuple[int, int], dict[str, float]]
    set_metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """`minima`, `graph` (nodes and edges), `stats` and `set_metrics`, as plain JSON."""
        graph = self.result.graph
        nodes = {
            node: node_json(node, data["point"], data["depth"], to_text(data["fingerprint"]))
            for node, data in graph.nodes(data=True)
        }
        minima = [solution_json(nodes[m.id], m.metrics, m.point.theta) for m in self.minima]
        edges = [ride_json(a, b, labels) for a, b, labels in graph.edges(data=True)]
        return {
            "problem": self.problem.name,
            "spec": self.spec.model_dump(),
            "minima": minima,
            "graph": {"nodes": list(nodes.values()), "edges": edges},
            "pairs": [
                {"a": self.minima[i].id, "b": self.minima[j].id, **v}
                for (i, j), v in self.pairs.items()
            ],
            "set_metrics": self.set_metrics,
            "stats": {
                "hvps": self.result.hvps,
                "rides": graph.number_of_edges() + len(self.result.failures),
                "failed_rides": len(self.result.failures),
                "failed_points": sum(1 for _, data in graph.nodes(data=True) if "error" in data),
                "nodes": graph.number_of_nodes(),
                "seconds": self.result.seconds,
                "stopped": self.result.stopped,
                "open": self.result.open,
            },
        }


def run(
    spec: SearchSpec | None = None,
    problem: Problem | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SearchReport:
    """Search `problem` (default: the one `spec.problem` names) and measure what it found."""
    spec = spec or SearchSpec()
    problem = problem or load(spec.problem)
    result = search(problem, spec, on_progress)
    minima = [
        Minimum(node, data["point"], data["metrics"])
        for node, data in result.graph.nodes(data=True)
        if data["point"].kind in SOLUTION_KINDS and "metrics" in data
    ]
    thetas = [m.point.theta for m in minima]
    pairs = pairwise_metrics(problem, thetas)
    return SearchReport(spec, problem, result, minima, pairs, set_metrics(problem, thetas, pairs))
