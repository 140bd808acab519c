"""The search's tree kept in the database: a `ridgerider.search.loop.Tree` for one job.

The in-process runner and every worker of a pool run the engine's one loop over this tree: a
unit is claimed by the frontier with a compare-and-set, its pure step runs outside any
transaction, and its outcome is kept on the unit and recorded in its turn (`storage.turns`: the
frontier's order, so that units that end in another order on a pool make the same tree), under
the job's lock, with the merge of a new point into the archive. Tensors go to the artifact
store; rows hold their sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from cachetools import LRUCache
from sqlalchemy.orm import Session
from torch import Tensor

from ridgerider.critical import CriticalPoint
from ridgerider.problems.base import Problem
from ridgerider.search.archive import evaluation_probabilities, find_copy, keys_of, window_of
from ridgerider.search.budget import Progress, RidesFrom, counted_out
from ridgerider.search.fingerprint import Fingerprint
from ridgerider.search.frontier import Unit, search_frontier
from ridgerider.search.ridges import Spectrum
from ridgerider.search.scale import merge_tolerance
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import (
    Expansion,
    NodeWork,
    Outcome,
    depth_cut,
    work_of,
)
from storage.artifacts import ArtifactStore, get_tensors, put_tensors
from storage.database import Database
from storage.jobs import lock_job
from storage.models import Node
from storage.progress import progress
from storage.queries import root_node
from storage.records import (
    MergeWindow,
    PointRecord,
    QueuedRides,
    RideResult,
    grant_climbs,
    rides_taken,
    skip_waiting,
    start_job,
    waiting_climbs,
)
from storage.turns import (
    Kept,
    end_outcome,
    evaluation_outcome,
    expansion_outcome,
    has_computed,
    keep_outcome,
    next_turn,
    node_unit,
    past_budget,
    record_turn,
    ride_outcome,
)
from storage.units import claim_next, new_token, note_stop, skip_open

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
        self.key = search_frontier(spec, problem)
        self.token_prefix = token_prefix
        self.tokens: dict[tuple[str, int], str] = {}
        self._tensors: LRUCache[str, dict[str, Tensor]] = LRUCache(TENSOR_CACHE_SIZE)
        self._rides_from: LRUCache[Fingerprint, RidesFrom] = LRUCache(TENSOR_CACHE_SIZE)
        self._noted: set[str] = set()
        self._root: CriticalPoint | None = None

    def has_root(self) -> bool:
        with self.db.session(readonly=True) as session:
            return root_node(session, self.job_id) is not None

    def add_root(
        self, root: CriticalPoint, work: NodeWork, stopped: str | None = None
    ) -> list[Unit]:
        record = self._save(root, None)
        with self.db.session() as session:
            node = start_job(session, self.job_id, record, work, root.hvps, stopped)
            return [] if work == "none" else [node_unit(node)]

    def root(self) -> CriticalPoint:
        """The start, read once: a root never changes (each unit's step reads it)."""
        if self._root is None:
            with self.db.session(readonly=True) as session:
                self._root = self._point(root_node(session, self.job_id))
        return self._root

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
        return self._in_turn(unit, end_outcome("skipped", reason))

    def note_stop(self, reason: str) -> None:
        if reason in self._noted:
            return  # said once by this process: saying it again changes nothing
        with self.db.session() as session:
            note_stop(session, self.job_id, reason)
        self._noted.add(reason)

    def skip_open(self, unit: Unit, reason: str) -> list[Unit]:
        with self.db.session() as session:
            freed = skip_open(session, self.job_id, reason)
            units = [node_unit(session.get(Node, i)) for i in freed]
        released = self.skip(unit, reason)
        known = {unit.id for unit in released}
        return released + [unit for unit in units if unit.id not in known]

    def fail(self, unit: Unit, reason: str) -> list[Unit]:
        return self._in_turn(unit, end_outcome("failed", reason))

    def record_expansion(
        self, unit: Unit, spectrum: Spectrum, rides: list[tuple[int, int]], hvps: int
    ) -> list[Unit]:
        labelled = _labelled(spectrum, rides)
        return self._in_turn(unit, expansion_outcome(self._save_spectrum(spectrum), labelled, hvps))

    def record_ride(self, unit: Unit, outcome: Outcome[CriticalPoint]) -> list[Unit]:
        result: RideResult = replace(outcome, point=None, spectrum=None)
        if outcome.point is None:
            return self._in_turn(unit, ride_outcome(result))
        point = outcome.point
        keys = keys_of(self.problem, point, self.spec)
        found = window_of(point, keys, self.spec)
        window = MergeWindow(found.loss, found.function, found.kinds)
        result = replace(result, point=self._save(point, outcome.spectrum, keys.function))
        tolerance = merge_tolerance(self.problem, self.root(), point, self.spec)
        work = work_of(point, unit.depth + 1, self.spec)
        cut = depth_cut(point, work)
        return self._in_turn(unit, ride_outcome(result, window, tolerance, work, cut))

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
        return self._in_turn(unit, evaluation_outcome(sha256, metrics, labels, queued))

    def record_computed(self) -> list[Unit]:
        """Record the outcomes whose turn has come (`storage.turns`); the units this made
        claimable. Each record does this; a runner that resumes a job, and a pool's ticket,
        do it first, for outcomes whose recorder died."""
        with self.db.session(readonly=True) as session:
            if not has_computed(session, self.job_id):
                return []
        with self.db.session() as session:
            lock_job(session, self.job_id)
            return self._record_turns(session)

    def _in_turn(self, unit: Unit, outcome: Kept) -> list[Unit]:
        """Keep the claimed unit's outcome and record every outcome whose turn has come; the
        units this made claimable (none if the claim was lost)."""
        with self.db.session() as session:
            lock_job(session, self.job_id)
            if not keep_outcome(session, unit.kind, unit.id, self._token(unit), outcome):
                return []
            return self._record_turns(session)

    def _record_turns(self, session: Session) -> list[Unit]:
        released: dict[tuple[str, int], Unit] = {}
        counted = self.spec.max_solutions is not None or self.spec.max_hvps is not None
        while (turn := next_turn(session, self.job_id, self.key)) is not None:
            unit, outcome = turn
            freed: list[Unit] = []
            if counted and (reason := counted_out(self.spec, progress(session, self.job_id))):
                outcome, freed = past_budget(session, self.job_id, unit, outcome, reason)
            for made in [*freed, *record_turn(session, unit, outcome, self._copy_of)]:
                released[made.kind, made.id] = made
        return list(released.values())

    def _copy_of(
        self, point: PointRecord, tolerance: float, candidates: list[tuple[int, str]]
    ) -> int | None:
        """The node among `candidates` (id, theta sha256) that the stored `point` copies."""
        known = ((node_id, self._theta(sha256)) for node_id, sha256 in candidates)
        theta = self._theta(point.theta_sha256)
        return find_copy(self.problem, theta, known, self.spec, tolerance)

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
            node.norm_estimate or 0.0,
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
            point.norm_estimate,
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


def predictions(problem: Problem, theta: Tensor) -> bytes | None:
    """Predicted classes on the evaluation split as int16 bytes; None for non-classifiers."""
    probabilities = evaluation_probabilities(problem, theta)
    if probabilities is None:
        return None
    return probabilities.argmax(1).cpu().numpy().astype(np.int16).tobytes()
