"""The search's tree kept in the database: a `ridgerider.search.loop.Tree` for one job.

The in-process runner and every worker of a pool run the engine's one loop over this tree: a
unit is claimed by the frontier with a compare-and-set, its pure step runs outside any
transaction, and its record (with the merge of a new point into the archive) runs under the
job's lock. Tensors go to the artifact store; rows hold their sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from cachetools import LRUCache
from torch import Tensor

from ridgerider.critical import CriticalPoint
from ridgerider.problems.base import Problem
from ridgerider.search.archive import evaluation_probabilities, find_copy, keys_of, window_of
from ridgerider.search.budget import DEPTH_LIMIT, Progress, RidesFrom
from ridgerider.search.fingerprint import Fingerprint, from_text
from ridgerider.search.frontier import Unit
from ridgerider.search.ridges import Spectrum
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import (
    Expansion,
    NodeWork,
    Outcome,
    copy_tolerance,
    depth_cut,
    work_of,
)
from storage.artifacts import ArtifactStore, get_tensors, put_tensors
from storage.database import Database
from storage.models import Node
from storage.progress import progress
from storage.queries import root_node
from storage.records import (
    MergeWindow,
    PointRecord,
    QueuedRides,
    RideResult,
    grant_climbs,
    record_evaluation,
    record_expansion,
    record_ride,
    rides_taken,
    skip_waiting,
    start_job,
    waiting_climbs,
)
from storage.units import claim_next, end_unit, new_token, note_stop, skip_open

TENSOR_CACHE_SIZE = 4096
ALL_WORK = ("expand", "evaluate", "ride")


class JobTree:
    """The tree of job `job_id` in `db`, its tensors in `store`.

    Args:
        token_prefix: put before every claim token (a pool worker names its process there).
    """

    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        job_id: int,
        problem: Problem,
        spec: SearchSpec,
        token_prefix: str = "",
    ) -> None:
        self.db, self.store, self.job_id = db, store, job_id
        self.problem, self.spec = problem, spec
        self.token_prefix = token_prefix
        self.tokens: dict[tuple[str, int], str] = {}
        self._tensors: LRUCache[str, dict[str, Tensor]] = LRUCache(TENSOR_CACHE_SIZE)
        self._rides_from: LRUCache[Fingerprint, RidesFrom] = LRUCache(TENSOR_CACHE_SIZE)
        self._noted: set[str] = set()

    def has_root(self) -> bool:
        with self.db.session(readonly=True) as session:
            return root_node(session, self.job_id) is not None

    def add_root(
        self, root: CriticalPoint, work: NodeWork, stopped: str | None = None
    ) -> list[Unit]:
        record = self._save(root, None)
        with self.db.session() as session:
            node = start_job(session, self.job_id, record, work, root.hvps, stopped)
            return [] if work == "none" else [_node_unit(node)]

    def root(self) -> CriticalPoint:
        with self.db.session(readonly=True) as session:
            return self._point(root_node(session, self.job_id))

    def claim(self, key: Callable[[Unit], tuple], works: tuple[str, ...] = ALL_WORK) -> Unit | None:
        """The frontier's next pending unit, claimed (of `works` only, where given)."""
        token = f"{self.token_prefix}{new_token()[:16]}"
        unit = claim_next(self.db, self.job_id, key, token, works)
        if unit is not None:
            self.tokens[unit.kind, unit.id] = token
        return unit

    def progress(self) -> Progress:
        with self.db.session(readonly=True) as session:
            return progress(session, self.job_id)

    def point(self, node_id: int) -> CriticalPoint:
        with self.db.session(readonly=True) as session:
            return self._point(session.get(Node, node_id))

    def spectrum(self, node_id: int) -> Spectrum | None:
        with self.db.session(readonly=True) as session:
            sha256 = session.get(Node, node_id).spectrum_sha256
        if sha256 is None:
            return None
        stored = self._tensors_of(sha256)
        return Spectrum(
            stored["values"],
            self.problem.place(stored["vectors"]),
            stored["norm_estimate"].item(),
            0,
            bool(stored["truncated"].item()),
        )

    def rides_from(self, fingerprint: Fingerprint) -> RidesFrom:
        cached = self._rides_from.get(fingerprint)
        if cached is not None:
            return cached
        with self.db.session(readonly=True) as session:
            taken, waiting = rides_taken(session, self.job_id, fingerprint)
        if (taken.shared or taken.granted) and not waiting:
            self._rides_from[fingerprint] = taken  # no later grant can change them
        return taken

    def skip(self, unit: Unit, reason: str) -> list[Unit]:
        return self._end(unit, "skipped", reason)

    def note_stop(self, reason: str) -> None:
        if reason in self._noted:
            return  # said once by this process: saying it again changes nothing
        with self.db.session() as session:
            note_stop(session, self.job_id, reason)
        self._noted.add(reason)

    def skip_open(self, unit: Unit, reason: str) -> list[Unit]:
        released = self.skip(unit, reason)
        with self.db.session() as session:
            freed = skip_open(session, self.job_id, reason)
            units = [_node_unit(session.get(Node, i)) for i in freed]
        known = {unit.id for unit in released}
        return released + [unit for unit in units if unit.id not in known]

    def fail(self, unit: Unit, reason: str) -> list[Unit]:
        return self._end(unit, "failed", reason)

    def _end(self, unit: Unit, state: str, reason: str) -> list[Unit]:
        with self.db.session() as session:
            released = end_unit(session, unit.kind, unit.id, self._token(unit), state, reason)
            return [_node_unit(session.get(Node, i)) for i in released or []]

    def record_expansion(
        self, unit: Unit, spectrum: Spectrum, rides: list[tuple[int, int]], hvps: int
    ) -> list[Unit]:
        sha256 = self._save_spectrum(spectrum)
        labelled = _labelled(spectrum, rides)
        with self.db.session() as session:
            ids = record_expansion(session, unit.id, self._token(unit), sha256, labelled, hvps)
        return _ride_units(unit, ids, labelled)

    def record_ride(self, unit: Unit, outcome: Outcome[CriticalPoint]) -> list[Unit]:
        window, record = MergeWindow((0.0, 0.0)), None
        if outcome.point is not None:
            keys = keys_of(self.problem, outcome.point, self.spec)
            found = window_of(outcome.point, keys, self.spec)
            window = MergeWindow(found.loss, found.function, found.kinds)
            record = self._save(outcome.point, outcome.spectrum, keys.function)
        result: RideResult = replace(outcome, point=record, spectrum=None)

        def copy_of(candidates: list[tuple[int, str]]) -> int | None:
            known = ((node_id, self._theta(sha256)) for node_id, sha256 in candidates)
            tolerance = copy_tolerance(self.problem, outcome.point, self.spec)
            return find_copy(self.problem, outcome.point.theta, known, self.spec, tolerance)

        cuts: list[bool] = []

        def work(_: PointRecord, depth: int) -> NodeWork:
            node_work = work_of(outcome.point, depth, self.spec)
            cuts.append(depth_cut(outcome.point, node_work))
            return node_work

        with self.db.session() as session:
            recorded = record_ride(
                session, unit.id, self._token(unit), result, window, copy_of, work
            )
            if recorded is None:
                return []
            released = [_node_unit(session.get(Node, i)) for i in recorded.released]
        if any(cuts):
            self.note_stop(DEPTH_LIMIT)
        return released

    def record_evaluation(
        self,
        unit: Unit,
        metrics: dict[str, float],
        climbs: Expansion | None = None,
        waiting: int = 0,
    ) -> list[Unit]:
        point = self.point(unit.node_id)
        with self.db.session(readonly=True) as session:
            sha256 = session.get(Node, unit.node_id).theta_sha256
        labels = predictions(self.problem, point.theta)
        queued = None
        if climbs is not None:
            spectrum, rides, hvps = climbs
            labelled = _labelled(spectrum, rides)
            queued = QueuedRides(self._save_spectrum(spectrum), labelled, hvps, waiting)
        with self.db.session() as session:
            ids = record_evaluation(
                session, unit.id, self._token(unit), sha256, metrics, labels, queued
            )
        return [] if queued is None else _ride_units(unit, ids, queued.rides)

    def waiting_climbs(self) -> int:
        with self.db.session(readonly=True) as session:
            return waiting_climbs(session, self.job_id)

    def grant_climbs(self, quota: int | None) -> list[Unit]:
        with self.db.session() as session:
            granted = grant_climbs(session, self.job_id, quota)
        return [
            Unit(
                "ride",
                climb.ride_id,
                "ride",
                climb.node_id,
                climb.depth,
                (*climb.path, (climb.eigen_index, climb.sign)),
                climb.eigenvalue,
            )
            for climb in granted
        ]

    def skip_waiting(self, reason: str) -> None:
        with self.db.session() as session:
            skip_waiting(session, self.job_id)
        self.note_stop(reason)

    def _token(self, unit: Unit) -> str | None:
        return self.tokens.pop((unit.kind, unit.id), None)

    def _point(self, node: Node) -> CriticalPoint:
        return CriticalPoint(
            self._theta(node.theta_sha256),
            node.loss,
            node.grad_norm,
            node.kind,
            node.index,
            torch.tensor(node.eigenvalues, dtype=torch.float64),
            0,
            node.index_is_exact,
        )

    def _save(
        self, point: CriticalPoint, spectrum: Spectrum | None, function_key: float | None = None
    ) -> PointRecord:
        sha256 = put_tensors(self.store, {"theta": point.theta})
        self._tensors[sha256] = {"theta": point.theta}
        return PointRecord(
            point.kind,
            point.index,
            point.index_is_exact,
            point.loss,
            point.grad_norm,
            point.eigenvalues.tolist(),
            sha256,
            function_key,
            None if spectrum is None else self._save_spectrum(spectrum),
        )

    def _save_spectrum(self, spectrum: Spectrum) -> str:
        tensors = {
            "values": spectrum.values,
            "vectors": spectrum.vectors,
            "norm_estimate": torch.tensor([spectrum.norm_estimate], dtype=torch.float64),
            "truncated": torch.tensor([spectrum.truncated]),
        }
        sha256 = put_tensors(self.store, tensors)
        self._tensors[sha256] = tensors
        return sha256

    def _theta(self, sha256: str) -> Tensor:
        return self.problem.place(self._tensors_of(sha256)["theta"])

    def _tensors_of(self, sha256: str) -> dict[str, Tensor]:
        tensors = self._tensors.get(sha256)
        if tensors is None:
            tensors = self._tensors[sha256] = get_tensors(self.store, sha256)
        return tensors


def _labelled(spectrum: Spectrum, rides: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """(eigen index, sign, eigenvalue) of each ride."""
    return [(index, sign, spectrum.values[index].item()) for index, sign in rides]


def _ride_units(
    unit: Unit, ids: list[int] | None, labelled: list[tuple[int, int, float]]
) -> list[Unit]:
    """The units of the rides just queued (with ids `ids`) from the node of `unit`."""
    return [
        Unit("ride", ride_id, "ride", unit.id, unit.depth, (*unit.fingerprint, (i, s)), value)
        for ride_id, (i, s, value) in zip(ids or [], labelled, strict=False)
    ]


def _node_unit(node: Node) -> Unit:
    value = node.eigenvalues[0] if node.eigenvalues else 0.0
    return Unit("node", node.id, node.work, node.id, node.depth, from_text(node.path), value)


def predictions(problem: Problem, theta: Tensor) -> bytes | None:
    """Predicted classes on the evaluation split as int16 bytes; None for non-classifiers."""
    probabilities = evaluation_probabilities(problem, theta)
    if probabilities is None:
        return None
    return probabilities.argmax(1).cpu().numpy().astype(np.int16).tobytes()
