"""The one search loop: claim the frontier's next unit, do its pure step, record it, repeat.

Where the tree lives is a `Tree`: in memory (`MemoryTree`: the library, tests, benchmarks) or in
a database (the in-process runner and every worker of a pool run `work_on` on the same units,
claimed by the same frontier). Parts swap as in pyribs' scheduler / emitters / archive: the
frontier orders the units, the archive merges copies, the budget stops new work, and the steps
(`ridgerider.search.steps`) do the numerical work without knowing where the tree is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from ridgerider.critical import CriticalPoint, zero_rtol
from ridgerider.problems.base import Problem
from ridgerider.search.budget import (
    CLIMB_POINTS,
    DEPTH_LIMIT,
    NODE_BUDGET,
    RIDGE_CAP,
    Progress,
    RidesFrom,
    climb_grant,
    exhausted,
    quota_of,
)
from ridgerider.search.fingerprint import Fingerprint
from ridgerider.search.frontier import Unit, search_frontier
from ridgerider.search.ridges import Spectrum, make_ridge, ridges_capped
from ridgerider.search.scale import EngineUnits, engine_units
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import (
    Expansion,
    NodeWork,
    Outcome,
    StartError,
    climbs,
    climbs_from,
    evaluate,
    expand,
    follow,
    start_point,
    start_stop,
    work_of,
)

UNIT_ERRORS = (ArithmeticError, ValueError, RuntimeError)


class Tree(Protocol):
    """A search's tree where it is kept. Every `record_*` merges a new point into the tree's
    archive atomically (two rides reaching one point give one node and two edges); it and
    `skip` / `fail` return the units that became claimable (a worker pool sends work for each).
    An evaluated minimum's `climbs` (`steps.climbs`) are queued like a branch point's rides.

    `skip_open` skips a unit and every other pending unit but the evaluations, at once: a
    running budget that ran out stays out, so each would be skipped when claimed. `note_stop`
    records why the search is incomplete where a limit cut it short without a unit to skip (a
    saddle left unexpanded at `max_depth`, a minimum's climbs the node budget never granted): a
    search reports "frontier exhausted" only where nothing was cut. Of several reasons the
    trees keep the one `budget.stop_reason` ranks first, whatever order they came in.

    `record_evaluation`'s last `waiting` climbs are left waiting for the node budget's unused
    points, and so is the retake of every climb a ride recorded as ended "climb-turned"
    (`steps.CLIMB_TURNED`: the climb's sign doubled, `fingerprint.RETAKEN`); `waiting_climbs`
    counts the climbs waiting, `grant_climbs` queues them all, each with the quota granted
    (None: no node budget), the retakes after the rest, each node's in the order (eigen index,
    + before -), and `skip_waiting` ends them as skipped, for `reason` (`grant_waiting`).

    `add_root`'s `stopped`, where given, is why the search ends at its root (`steps.start_stop`).
    `rides_from(path)` gives the rides taken from the point at `path` (`budget.RidesFrom`: the
    node budget's quotas follow from them).

    A node that a ride created is held (not claimable) until the ride along the same ridge in
    the other direction has ended too, and if both reach one point the node keeps the point and
    path of the + ride: so the tree does not depend on which of the two finishes first (one
    runner, or a pool with both in flight; at a symmetric branch point the two directions
    often reach symmetric copies, whose own rides differ)."""

    def has_root(self) -> bool: ...

    def add_root(
        self, root: CriticalPoint, work: NodeWork, stopped: str | None = None
    ) -> list[Unit]: ...

    def root(self) -> CriticalPoint: ...

    def claim(self, key: Callable[[Unit], tuple]) -> Unit | None: ...

    def progress(self) -> Progress: ...

    def point(self, node_id: int) -> CriticalPoint: ...

    def spectrum(self, node_id: int) -> Spectrum | None: ...

    def rides_from(self, fingerprint: Fingerprint) -> RidesFrom: ...

    def skip(self, unit: Unit, reason: str) -> list[Unit]: ...

    def skip_open(self, unit: Unit, reason: str) -> list[Unit]: ...

    def note_stop(self, reason: str) -> None: ...

    def fail(self, unit: Unit, reason: str) -> list[Unit]: ...

    def record_expansion(
        self, unit: Unit, spectrum: Spectrum, rides: list[tuple[int, int]], hvps: int
    ) -> list[Unit]: ...

    def record_ride(self, unit: Unit, outcome: Outcome[CriticalPoint]) -> list[Unit]: ...

    def record_evaluation(
        self,
        unit: Unit,
        metrics: dict[str, float],
        climbs: Expansion | None = None,
        waiting: int = 0,
    ) -> list[Unit]: ...

    def waiting_climbs(self) -> int: ...

    def grant_climbs(self, quota: int | None) -> list[Unit]: ...

    def skip_waiting(self, reason: str) -> None: ...


def begin(tree: Tree, problem: Problem, spec: SearchSpec) -> list[Unit]:
    """Classify the start and make it the tree's root (nothing if it has one already), in the
    engine's units where its curvature calls for them (`scale.loss_scale`).

    Raises:
        StartError: the problem has no start, or the start is not a critical point.
    """
    if tree.has_root():
        return []
    spec = spec.resolved(problem)
    root = start_point(problem, spec)
    units = engine_units(problem, root)
    if units.scale != 1:  # classified again where its zero eigenvalues are told apart
        try:
            root = units.point_out(start_point(units.problem, spec))
        except StartError as error:
            raise StartError(units.failure_out(str(error))) from error
    return tree.add_root(root, work_of(root, 0, spec), start_stop(root))


def work_on(tree: Tree, problem: Problem, spec: SearchSpec, unit: Unit) -> list[Unit]:
    """Do one claimed unit and record it; returns the units it created. A running budget used
    up skips the unit and every pending one with it (evaluations are never skipped); a node
    budget skips the ride it leaves no share; an error fails that unit only. An evaluated
    minimum is climbed from (`SearchSpec.climb_minima`) while the running budgets last, as many
    climbs as its node quota holds at CLIMB_POINTS points a climb, the rest left waiting
    (`grant_waiting`). Budgets `spec` omits are filled in for `problem` (`SearchSpec.resolved`).
    The steps run in the engine's units (`scale.engine_units`); the tree holds the user's."""
    spec = spec.resolved(problem)
    if unit.work != "evaluate" and (reason := exhausted(spec, tree.progress())):
        return tree.skip_open(unit, reason)
    if unit.work == "ride" and _quota(tree, spec, unit) < 1:
        return tree.skip(unit, NODE_BUDGET)
    units = engine_units(problem, tree.root())
    try:
        engine = units.problem
        if unit.work == "expand":
            point = units.point_in(tree.point(unit.node_id))
            known = units.spectrum_in(tree.spectrum(unit.node_id))
            spectrum, rides, hvps = expand(engine, point, spec, known)
            if ridges_capped(engine, spectrum, spec, zero_rtol(problem.dim)):
                tree.note_stop(RIDGE_CAP)
            return tree.record_expansion(unit, units.spectrum_out(spectrum), rides, hvps)
        if unit.work == "ride":
            return tree.record_ride(unit, units.outcome_out(_ride(tree, units, spec, unit)))
        point = tree.point(unit.node_id)
        metrics = evaluate(problem, point, spec)
        hops, waiting = None, 0
        if (reason := exhausted(spec, tree.progress())) is None:
            hops = climbs(engine, units.point_in(point), spec)
        elif climbs_from(problem, point, spec):
            tree.note_stop(reason)  # no climbs past a running budget
        if hops is not None:
            hops = (units.spectrum_out(hops[0]), *hops[1:])
            if spec.max_nodes is not None:
                kept = max(_quota(tree, spec, unit) - 1, 0) // CLIMB_POINTS
                waiting = max(len(hops[1]) - int(kept), 0)
        return tree.record_evaluation(unit, metrics, hops, waiting)
    except UNIT_ERRORS as error:
        message = f"{type(error).__name__}: {error}"
        return tree.fail(unit, message if unit.work == "evaluate" else units.failure_out(message))


def _ride(tree: Tree, units: EngineUnits, spec: SearchSpec, unit: Unit) -> Outcome[CriticalPoint]:
    """The ride `unit`, in the engine's units."""
    spectrum = units.spectrum_in(tree.spectrum(unit.node_id))
    if spectrum is None:
        raise LookupError(f"node {unit.node_id} has no spectrum to ride from")
    eigen_index, sign = unit.fingerprint[-1]
    track = spec.ride_config().track
    ridge = make_ridge(unit.node_id, spectrum, eigen_index, sign, track)
    start = units.point_in(tree.point(unit.node_id))
    problem = units.problem
    target = spec.settle_target(problem, tree.root())
    deepest = unit.depth + 1 >= spec.max_depth
    last = deepest or _quota(tree, spec, unit) <= 1

    def over_budget() -> bool:
        return exhausted(spec, tree.progress()) is not None

    outcome = follow(problem, start, ridge, spec, target, last, over_budget)
    if outcome.cut:
        reason = exhausted(spec, tree.progress())
        tree.note_stop(reason or (DEPTH_LIMIT if deepest else NODE_BUDGET))
    return outcome


def _quota(tree: Tree, spec: SearchSpec, unit: Unit) -> float:
    """The node quota of the point `unit` reaches (`budget.quota_of`); inf without a budget."""
    if spec.max_nodes is None:
        return math.inf
    return quota_of(unit.fingerprint, spec.max_nodes, tree.rides_from)


def grant_waiting(tree: Tree, problem: Problem, spec: SearchSpec) -> list[Unit]:
    """Grant the node budget's unused points to the climbs left waiting, once no unit is left
    (the tree still: the grant is the same on any runner); returns the climbs queued. Where the
    points cannot hold every climb waiting (`budget.climb_grant`), or a running budget has run
    out, the climbs are skipped: they are why the search is incomplete. With no node budget
    every climb waiting (the retakes of climbs that turned off their direction) is queued: they
    come after all other work, which a running budget spends first."""
    waiting = tree.waiting_climbs()
    if not waiting:
        return []
    spec = spec.resolved(problem)
    progress = tree.progress()
    if reason := exhausted(spec, progress):
        tree.skip_waiting(reason)
        return []
    if spec.max_nodes is None:
        return tree.grant_climbs(None)
    quota = climb_grant(spec.max_nodes - progress.nodes, waiting)
    if not quota:
        tree.skip_waiting(NODE_BUDGET)
        return []
    return tree.grant_climbs(quota)


def run(
    tree: Tree,
    problem: Problem,
    spec: SearchSpec,
    on_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Start the tree (unless it has started) and work on it until no unit is left.

    Raises:
        StartError: the problem has no start, or the start is not a critical point.
    """
    begin(tree, problem, spec)
    key = search_frontier(spec, problem)
    while True:
        while (unit := tree.claim(key)) is not None:
            work_on(tree, problem, spec, unit)
            if on_progress is not None:
                on_progress(tree.progress())
        if not grant_waiting(tree, problem, spec):
            return
