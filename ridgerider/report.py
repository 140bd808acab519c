"""One call from a spec to a report: search, then the metrics of the set; and the report's JSON
shape, shared with the stored job's document (`storage.report`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from ridgerider.critical import SOLUTION_KINDS, CriticalPoint
from ridgerider.metrics import pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search import SearchResult, SearchSpec, search
from ridgerider.search.budget import Progress
from ridgerider.search.fingerprint import to_text

THETA_IN_JSON_MAX_DIM = 100
SOLUTION_NODE_KEYS = ("loss", "grad_norm", "index", "fingerprint")  # a solution's, of its node


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
                "nodes": graph.number_of_nodes(),
                "seconds": self.result.seconds,
                "stopped": self.result.stopped,
                "open": self.result.open,
            },
        }


class NodePoint(Protocol):
    """What a node's JSON shows of its point: a CriticalPoint, or a node as a database keeps it
    (`storage.models.Node`)."""

    @property
    def kind(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def grad_norm(self) -> float: ...


def node_json(node_id: int, point: NodePoint, depth: int, fingerprint: str) -> dict[str, Any]:
    """A node of the DAG as JSON: the one shape every view of a node (a report's graph and
    minima; a stored job's document, events and graph) is taken from."""
    return {
        "id": node_id,
        "kind": point.kind,
        "index": point.index,
        "loss": point.loss,
        "grad_norm": point.grad_norm,
        "depth": depth,
        "fingerprint": fingerprint,
    }


def ride_json(start: int, end: int | None, labels: dict[str, Any]) -> dict[str, Any]:
    """A ride (an edge of the DAG) as JSON, from its labels (`ride_labels`): the one shape every
    view of a ride (a report's graph; a stored job's document, events and lineage) is taken from."""
    return {"from": start, "to": end, **labels}


def solution_json(
    node: dict[str, Any], metrics: dict[str, float], theta: Tensor, **labels: Any
) -> dict[str, Any]:
    """A solution as JSON, from its node's (`node_json`): the node's id, loss, gradient norm,
    index and fingerprint, any `labels`, the metrics, and `theta` for problems of at most
    THETA_IN_JSON_MAX_DIM parameters."""
    entry = {"node": node["id"], **{key: node[key] for key in SOLUTION_NODE_KEYS}, **labels}
    entry["metrics"] = metrics
    if (values := theta_json(theta)) is not None:
        entry["theta"] = values
    return entry


def theta_json(theta: Tensor) -> list[float] | None:
    """The parameters as a list, for problems small enough to print them."""
    return theta.tolist() if theta.numel() <= THETA_IN_JSON_MAX_DIM else None


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
