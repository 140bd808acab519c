"""The JSON shapes of the tree's nodes, rides and solutions: one shape each, shared by a
search's report (`ridgerider.report`) and a stored job's documents, events and lineage
(`storage`). Torch-free, so that the commands that only read stored results start without the
engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import Tensor

THETA_IN_JSON_MAX_DIM = 100
SOLUTION_NODE_KEYS = ("loss", "grad_norm", "index", "fingerprint")  # a solution's, of its node


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


class RidgeLabel(Protocol):
    """The ridge a ride followed: a ride in memory, or a stored one (`storage.models.Ride`)."""

    @property
    def eigen_index(self) -> int: ...
    @property
    def sign(self) -> int: ...
    @property
    def eigenvalue(self) -> float: ...


class RideStats(Protocol):
    """How a ride went: its `search.steps.Outcome`, or a stored ride (`storage.models.Ride`)."""

    @property
    def steps(self) -> int | None: ...
    @property
    def hvps(self) -> int | None: ...
    @property
    def end_reason(self) -> str | None: ...


def ride_labels(ridge: RidgeLabel, stats: RideStats) -> dict[str, Any]:
    """A ride's labels, in order: the one shape of an edge's attributes (the tree in memory, a
    stored job's graph) and, with its ends, of a ride as JSON (`ride_json`)."""
    return {
        "eigen_index": ridge.eigen_index,
        "sign": ridge.sign,
        "eigenvalue": ridge.eigenvalue,
        "steps": stats.steps,
        "hvps": stats.hvps,
        "end_reason": stats.end_reason,
    }


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
