"""The tree in memory: the search as a library call, returning a networkx DAG."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import networkx as nx
import torch

from ridgerider.critical import CriticalPoint
from ridgerider.json_shapes import ride_labels
from ridgerider.problems.base import Problem
from ridgerider.search.archive import MemoryArchive, find_copy, keys_of, window_of
from ridgerider.search.budget import DEPTH_LIMIT, Progress, RidesFrom, stop_reason
from ridgerider.search.fingerprint import RETAKEN, ROOT, Fingerprint, extend, to_text
from ridgerider.search.frontier import Unit
from ridgerider.search.loop import run
from ridgerider.search.ridges import Spectrum
from ridgerider.search.scale import merge_tolerance
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import (
    CLIMB_TURNED,
    Expansion,
    NodeWork,
    Outcome,
    depth_cut,
    work_of,
)

EXHAUSTED = "frontier exhausted"


@dataclass
class SearchResult:
    """The DAG (node attributes: `point`, a CriticalPoint; `depth`; `fingerprint`; edge
    attributes: `ride_labels`), the failed rides (each `failure` names the ride by the path it
    would have extended, "ride 0+.3-: ..."; a ride whose step raised has `end_reason` "error"
    and the exception in `failure`), HVPs spent, seconds, why the search stopped, and
    the units a budget left undone (`open`: expansions and rides)."""

    graph: nx.MultiDiGraph
    hvps: int
    seconds: float
    stopped: str
    failures: list[Outcome[CriticalPoint]] = field(default_factory=list)
    open: dict[str, int] = field(default_factory=dict)

    def points(self, kind: str | None = None) -> list[CriticalPoint]:
        return [
            data["point"]
            for _, data in self.graph.nodes(data=True)
            if kind is None or data["point"].kind == kind
        ]


RidgeKey = tuple[int, int]  # (branch point, eigen index): the ridge a + and a - ride follow


@dataclass
class _Ride:
    node: int
    eigen_index: int
    sign: int
    eigenvalue: float


class MemoryTree:
    """A `Tree` in memory. Nodes are numbered from 0 (the root) in the order they are found,
    rides from 0 in the order they are queued. Node attributes `ride` and `parent` say which
    ride's point the node keeps (None for the root)."""

    def __init__(self, problem: Problem, spec: SearchSpec) -> None:
        self.problem, self.spec = problem, spec.resolved(problem)
        self.graph = nx.MultiDiGraph()
        self.archive = MemoryArchive()
        self.spectra: dict[int, Spectrum] = {}
        self.rides: dict[int, _Ride] = {}
        self.pending: dict[tuple[str, int], Unit] = {}
        self.queue: list[tuple[tuple, str, int]] = []  # pending units by the claim key, a heap
        self.queue_key: Callable[[Unit], tuple] | None = None
        self.claimed: dict[tuple[str, int], Unit] = {}
        self.by_path: dict[Fingerprint, int] = {}
        self.taken: dict[int, list[tuple[int, int]]] = {}  # a node's rides, in order
        self.granted: dict[int, dict[tuple[int, int], int]] = {}  # climbs granted, their quotas
        self.waiting: dict[int, list[tuple[int, int]]] = {}  # climbs left waiting, in order
        self.turned: list[tuple[int, int, int]] = []  # climbs to retake: (node, eigen index, sign)
        self.unfinished: dict[RidgeKey, int] = {}  # its rides (+ and -) not yet ended
        self.held: dict[RidgeKey, list[int]] = {}  # the nodes its rides created
        self.failures: list[Outcome[CriticalPoint]] = []
        self.open = {"expansions": 0, "rides": 0}
        self.hvps = 0
        self.solutions = 0
        self.stopped = EXHAUSTED
        self.started = time.perf_counter()

    def has_root(self) -> bool:
        return self.graph.number_of_nodes() > 0

    def add_root(
        self, root: CriticalPoint, work: NodeWork, stopped: str | None = None
    ) -> list[Unit]:
        self.hvps += root.hvps
        self.stopped = stopped or self.stopped
        node = self._add_node(root, 0, ROOT, work, None, None)
        return self._release([node])

    def root(self) -> CriticalPoint:
        return self.graph.nodes[0]["point"]

    def claim(self, key: Callable[[Unit], tuple]) -> Unit | None:
        """The pending unit first by `key`; a heap ordered by the last key asked for, so that a
        claim costs a logarithm of the frontier, not a pass over it."""
        if key is not self.queue_key:
            self.queue_key = key
            self.queue = [(key(unit), kind, id_) for (kind, id_), unit in self.pending.items()]
            heapq.heapify(self.queue)
        while self.queue:
            _, kind, id_ = heapq.heappop(self.queue)
            if (kind, id_) in self.pending:
                unit = self.claimed[kind, id_] = self.pending.pop((kind, id_))
                return unit
        return None

    def progress(self) -> Progress:
        seconds = time.perf_counter() - self.started
        return Progress(self.graph.number_of_nodes(), self.solutions, self.hvps, seconds)

    def point(self, node_id: int) -> CriticalPoint:
        return self.graph.nodes[node_id]["point"]

    def spectrum(self, node_id: int) -> Spectrum | None:
        return self.spectra.get(node_id)

    def rides_from(self, fingerprint: Fingerprint) -> RidesFrom:
        node = self.by_path[fingerprint]
        return RidesFrom(self.taken.get(node, []), self.granted.get(node, {}))

    def skip(self, unit: Unit, reason: str) -> list[Unit]:
        self._done(unit)
        self.open["rides" if unit.kind == "ride" else "expansions"] += 1
        self.note_stop(reason)
        return self._ride_ended(unit)

    def note_stop(self, reason: str) -> None:
        self.stopped = stop_reason(None if self.stopped == EXHAUSTED else self.stopped, reason)

    def skip_open(self, unit: Unit, reason: str) -> list[Unit]:
        released = self.skip(unit, reason)
        while todo := [other for other in self.pending.values() if other.work != "evaluate"]:
            for other in todo:
                del self.pending[other.kind, other.id]
                released += self.skip(other, reason)
        return [other for other in released if (other.kind, other.id) in self.pending]

    def fail(self, unit: Unit, reason: str) -> list[Unit]:
        self._done(unit)
        if unit.kind == "node":
            self.graph.nodes[unit.id]["error"] = reason
        else:
            self._failed(unit, Outcome(0, 0, "error", failure=reason))
        return self._ride_ended(unit)

    def record_expansion(
        self, unit: Unit, spectrum: Spectrum, rides: list[tuple[int, int]], hvps: int
    ) -> list[Unit]:
        self._done(unit)
        self.taken[unit.id] = list(rides)
        return self._queue_rides(unit, spectrum, rides, hvps)

    def record_ride(self, unit: Unit, outcome: Outcome[CriticalPoint]) -> list[Unit]:
        self._done(unit)
        self.hvps += outcome.hvps
        if outcome.point is None:
            self._failed(unit, outcome)
            return self._ride_ended(unit)
        point, ride = outcome.point, self.rides[unit.id]
        ridge = (ride.node, ride.eigen_index)
        keys = keys_of(self.problem, point, self.spec)
        candidates = self.archive.candidates(window_of(point, keys, self.spec))
        tolerance = merge_tolerance(self.problem, self.root(), point, self.spec)
        target = find_copy(self.problem, point.theta, candidates, self.spec, tolerance)
        if target is None:
            depth = unit.depth + 1
            work = work_of(point, depth, self.spec)
            if depth_cut(point, work):
                self.note_stop(DEPTH_LIMIT)
            target = self._add_node(point, depth, unit.fingerprint, work, outcome.spectrum, unit)
            self.held.setdefault(ridge, []).append(target)
        elif target in self.held.get(ridge, []) and self.graph.nodes[target]["ride"] > unit.id:
            self._take_over(target, unit, outcome)
        self.graph.add_edge(ride.node, target, **ride_labels(ride, outcome))
        if outcome.end_reason == CLIMB_TURNED:
            self.turned.append((ride.node, ride.eigen_index, ride.sign))
        return self._ride_ended(unit)

    def record_evaluation(
        self,
        unit: Unit,
        metrics: dict[str, float],
        climbs: Expansion | None = None,
        waiting: int = 0,
    ) -> list[Unit]:
        self._done(unit)
        self.graph.nodes[unit.id]["metrics"] = metrics
        self.solutions += 1
        if climbs is None:
            return []
        spectrum, rides, hvps = climbs
        kept = len(rides) - waiting
        self.taken[unit.id] = rides[:kept]
        if waiting:
            self.waiting[unit.id] = rides[kept:]
        return self._queue_rides(unit, spectrum, rides[:kept], hvps)

    def waiting_climbs(self) -> int:
        return sum(len(climbs) for climbs in self.waiting.values()) + len(self.turned)

    def grant_climbs(self, quota: int | None) -> list[Unit]:
        retakes: dict[int, list[tuple[int, int]]] = {}
        for node, eigen_index, sign in sorted(self.turned, key=lambda t: (t[0], t[1], -t[2])):
            retakes.setdefault(node, []).append((eigen_index, RETAKEN * sign))
        units = []
        for node, climbs in [*sorted(self.waiting.items()), *retakes.items()]:
            if quota is not None:
                self.granted.setdefault(node, {}).update(dict.fromkeys(climbs, quota))
            data = self.graph.nodes[node]
            minimum = Unit("node", node, "evaluate", node, data["depth"], data["fingerprint"], 0.0)
            units += self._queue_rides(minimum, self.spectra[node], climbs, 0)
        self.waiting.clear()
        self.turned.clear()
        return units

    def skip_waiting(self, reason: str) -> None:
        self.open["rides"] += self.waiting_climbs()
        self.waiting.clear()
        self.turned.clear()
        self.note_stop(reason)

    def result(self) -> SearchResult:
        seconds = time.perf_counter() - self.started
        return SearchResult(
            self.graph, self.hvps, seconds, self.stopped, self.failures, dict(self.open)
        )

    def _failed(self, unit: Unit, outcome: Outcome[CriticalPoint]) -> None:
        """Keep the failed ride `unit`'s outcome, its failure naming the ride."""
        failure = f"ride {to_text(unit.fingerprint)}: {outcome.failure}"
        self.failures.append(replace(outcome, failure=failure))

    def _add_node(
        self,
        point: CriticalPoint,
        depth: int,
        fingerprint: Fingerprint,
        work: NodeWork,
        spectrum: Spectrum | None,
        ride: Unit | None,
    ) -> int:
        node = self.graph.number_of_nodes()
        self.graph.add_node(
            node,
            point=point,
            depth=depth,
            fingerprint=fingerprint,
            work=work,
            ride=None if ride is None else ride.id,
            parent=None if ride is None else ride.node_id,
        )
        self.archive.add(node, point.theta, keys_of(self.problem, point, self.spec))
        self.by_path[fingerprint] = node
        if spectrum is not None:
            self.spectra[node] = spectrum
        return node

    def _queue_rides(
        self, unit: Unit, spectrum: Spectrum, rides: list[tuple[int, int]], hvps: int
    ) -> list[Unit]:
        """Queue the rides (or climbs) from the node of `unit`, its spectrum kept."""
        self.spectra[unit.id] = spectrum
        self.hvps += hvps
        for eigen_index, _ in rides:
            key = (unit.id, eigen_index)
            self.unfinished[key] = self.unfinished.get(key, 0) + 1
        created = []
        for eigen_index, sign in rides:
            ride_id = len(self.rides)
            value = spectrum.values[eigen_index].item()
            self.rides[ride_id] = _Ride(unit.id, eigen_index, sign, value)
            fingerprint = extend(unit.fingerprint, eigen_index, sign)
            created.append(Unit("ride", ride_id, "ride", unit.id, unit.depth, fingerprint, value))
        self._queue(created)
        return created

    def _take_over(self, node: int, ride: Unit, outcome: Outcome[CriticalPoint]) -> None:
        """Node `node`, held, keeps the point of `ride`, the other sign of its ride's ridge."""
        point = outcome.point
        del self.by_path[self.graph.nodes[node]["fingerprint"]]
        self.by_path[ride.fingerprint] = node
        self.graph.nodes[node].update(point=point, fingerprint=ride.fingerprint, ride=ride.id)
        self.archive.replace(node, point.theta, keys_of(self.problem, point, self.spec))
        self.spectra.pop(node, None)
        if outcome.spectrum is not None:
            self.spectra[node] = outcome.spectrum

    def _ride_ended(self, unit: Unit) -> list[Unit]:
        """Release the nodes a ridge's rides created once both have ended."""
        if unit.kind != "ride":
            return []
        ride = self.rides[unit.id]
        key = (ride.node, ride.eigen_index)
        self.unfinished[key] -= 1
        if self.unfinished[key]:
            return []
        return self._release(self.held.pop(key, []))

    def _release(self, nodes: list[int]) -> list[Unit]:
        units = []
        for node in nodes:
            data = self.graph.nodes[node]
            if data["work"] == "none":
                continue
            values = data["point"].eigenvalues
            value = values[0].item() if values.numel() else 0.0
            unit = Unit("node", node, data["work"], node, data["depth"], data["fingerprint"], value)
            units.append(unit)
        self._queue(units)
        return units

    def _queue(self, units: list[Unit]) -> None:
        for unit in units:
            self.pending[unit.kind, unit.id] = unit
            if self.queue_key is not None:
                heapq.heappush(self.queue, (self.queue_key(unit), unit.kind, unit.id))

    def _done(self, unit: Unit) -> None:
        self.claimed.pop((unit.kind, unit.id), None)


def search(
    problem: Problem,
    spec: SearchSpec | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SearchResult:
    """Ride every ridge from the problem's start, recursively, until the frontier is empty or a
    budget ends; the tree in memory.

    Args:
        problem: what to search.
        spec: budgets and policies (its `problem` field is not used here); budgets it omits
            are filled in for `problem` (`SearchSpec.resolved`).
        on_progress: called after every unit of work.

    Raises:
        StartError: the problem has no start, or its start is not a critical point.
    """
    spec = (spec or SearchSpec()).resolved(problem)
    torch.manual_seed(spec.seed)
    tree = MemoryTree(problem, spec)
    run(tree, problem, spec, on_progress)
    return tree.result()
