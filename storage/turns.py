"""Units recorded in their turn: in the frontier's order, whatever order their steps end in.

Where the tree goes depends on the order of records: a point that two rides reach keeps the
copy recorded first, and that copy's own rides can lead elsewhere (on the tree MDP the copies
of a policy are mirror images). A pool runs several units at once, which end in any order. So
a unit's step keeps what it found on the unit (`computed`, its `outcome` in JSON), and kept
outcomes are recorded in the order one runner takes the units: a unit is recorded once it comes
first by the frontier's key among the job's units still to be recorded (pending and not held,
claimed, or computed). Steps run ahead of the records; the records, and so the tree, are those
of the in-process runner. A cancelled job records what its steps found without waiting.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ridgerider.search.budget import DEPTH_LIMIT
from ridgerider.search.fingerprint import from_text
from ridgerider.search.frontier import Unit
from storage.models import Job, Node, Ride, UnitState
from storage.records import (
    MergeWindow,
    PointRecord,
    QueuedRides,
    RideResult,
    record_evaluation,
    record_expansion,
    record_ride,
)
from storage.units import (
    UnitKind,
    database_clock,
    end_unit,
    note_stop,
    pending_units,
    skip_open,
    unit_table,
)

Kept = dict[str, Any]  # what a unit's step found, as kept in JSON
CopyFinder = Callable[[PointRecord, float, list[tuple[int, str]]], int | None]


def expansion_outcome(spectrum_sha256: str, rides: list[tuple[int, int, float]], hvps: int) -> Kept:
    """An expansion's stored spectrum, its rides (eigen index, sign, eigenvalue) and cost."""
    return {"step": "expansion", "spectrum": spectrum_sha256, "rides": rides, "hvps": hvps}


def ride_outcome(
    result: RideResult,
    window: MergeWindow | None = None,
    tolerance: float | None = None,
    work: str = "none",
    cut: bool = False,
) -> Kept:
    """A ride's outcome (its point a record), with what merging it needs: the `window` of its
    copies, the `tolerance` they lie within, the `work` a new node gets and whether a depth
    limit `cut` it."""
    return {
        "step": "ride",
        "steps": result.steps,
        "hvps": result.hvps,
        "end_reason": result.end_reason,
        "failure": result.failure,
        "point": None if result.point is None else asdict(result.point),
        "window": None if window is None else asdict(window),
        "tolerance": tolerance,
        "work": work,
        "cut": cut,
    }


def evaluation_outcome(
    weights_sha256: str,
    metrics: dict[str, float],
    predictions: bytes | None,
    climbs: QueuedRides | None,
) -> Kept:
    """An evaluated minimum's weights, metrics, predictions and the climbs to queue from it."""
    return {
        "step": "evaluation",
        "weights": weights_sha256,
        "metrics": {name: float(value) for name, value in metrics.items()},
        "predictions": None if predictions is None else base64.b64encode(predictions).decode(),
        "climbs": None if climbs is None else asdict(climbs),
    }


def end_outcome(state: str, reason: str) -> Kept:
    """A unit ended without its work: "failed" (an error) or "skipped" (a budget)."""
    return {"step": "end", "state": state, "reason": reason}


def keep_outcome(
    session: Session, kind: UnitKind, unit_id: int, token: str | None, outcome: Kept
) -> bool:
    """Keep the claimed unit's outcome until its turn (`computed`); False if the claim was
    lost. The caller holds the job's lock."""
    table = unit_table(kind)
    result = session.execute(
        update(table)
        .where(table.id == unit_id, table.state == UnitState.CLAIMED, table.claim_token == token)
        .values(
            state=UnitState.COMPUTED,
            claim_token=None,
            outcome=json.dumps(outcome),
            heartbeat_at=database_clock(session),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def has_computed(session: Session, job_id: int) -> bool:
    """Whether any unit of the job waits for its turn to be recorded."""
    return any(
        session.scalar(
            select(func.count()).where(table.job_id == job_id, table.state == UnitState.COMPUTED)
        )
        for table in (Node, Ride)
    )


def next_turn(
    session: Session, job_id: int, key: Callable[[Unit], tuple]
) -> tuple[Unit, Kept] | None:
    """The unit to record now and its outcome: the first by `key` of the job's units still to
    be recorded, where its step is done (any computed unit in a cancelled job); else None."""
    computed = pending_units(session, job_id, states=(UnitState.COMPUTED,))
    if not computed:
        return None
    first = min(computed, key=key)
    if not session.get(Job, job_id).cancel_requested:
        before = pending_units(session, job_id, states=(UnitState.PENDING, UnitState.CLAIMED))
        if before and key(min(before, key=key)) < key(first):
            return None
    table = unit_table(first.kind)
    outcome = session.scalar(select(table.outcome).where(table.id == first.id))
    return first, json.loads(outcome)


def past_budget(
    session: Session, job_id: int, unit: Unit, outcome: Kept, reason: str
) -> tuple[Kept, list[Unit]]:
    """What the in-process runner records for `unit` where the solution or HVP budget ran out
    (`reason`, `budget.counted_out`) before its turn, whatever its step found: an expansion or a
    ride skipped, with every open unit (`skip_open`); an evaluation without its climbs. A step
    runs ahead of the records, so it saw fewer of them than the runner does at its claim. With
    the pending evaluations the skips freed."""
    if unit.work != "evaluate":
        freed = skip_open(session, job_id, reason)
        return end_outcome("skipped", reason), [node_unit(session.get(Node, i)) for i in freed]
    if outcome.get("climbs") is None:
        return outcome, []
    note_stop(session, job_id, reason)
    return {**outcome, "climbs": None}, []


def record_turn(session: Session, unit: Unit, outcome: Kept, copy_of: CopyFinder) -> list[Unit]:
    """Record the computed `unit`'s outcome (`copy_of(point, tolerance, candidates)` finds the
    node a ride's point copies); the units this made claimable."""
    step = outcome["step"]
    if step == "expansion":
        rides = [tuple(ride) for ride in outcome["rides"]]
        ids = record_expansion(session, unit.id, None, outcome["spectrum"], rides, outcome["hvps"])
        created = ride_units(unit, ids, rides)
    elif step == "evaluation":
        created = _record_evaluation(session, unit, outcome)
    elif step == "ride":
        created = _record_ride(session, unit, outcome, copy_of)
    else:
        released = end_unit(session, unit.kind, unit.id, None, outcome["state"], outcome["reason"])
        created = [node_unit(session.get(Node, i)) for i in released or []]
    table = unit_table(unit.kind)
    session.execute(
        update(table)
        .where(table.id == unit.id)
        .values(outcome=None)
        .execution_options(synchronize_session=False)
    )
    return created


def _record_evaluation(session: Session, unit: Unit, outcome: Kept) -> list[Unit]:
    climbs = outcome["climbs"]
    queued = None
    if climbs is not None:
        rides = [tuple(ride) for ride in climbs["rides"]]
        queued = QueuedRides(climbs["spectrum_sha256"], rides, climbs["hvps"], climbs["waiting"])
    encoded = outcome["predictions"]
    predictions = None if encoded is None else base64.b64decode(encoded)
    ids = record_evaluation(
        session, unit.id, None, outcome["weights"], outcome["metrics"], predictions, queued
    )
    return [] if queued is None else ride_units(unit, ids, queued.rides)


def _record_ride(session: Session, unit: Unit, outcome: Kept, copy_of: CopyFinder) -> list[Unit]:
    point = None if outcome["point"] is None else PointRecord(**outcome["point"])
    result: RideResult = RideResult(
        outcome["steps"], outcome["hvps"], outcome["end_reason"], point, outcome["failure"]
    )
    window = MergeWindow((0.0, 0.0))
    if outcome["window"] is not None:
        found = outcome["window"]
        window = MergeWindow(
            tuple(found["loss"]),
            None if found["function"] is None else tuple(found["function"]),
            None if found["kinds"] is None else tuple(found["kinds"]),
        )

    def find_copy(candidates: list[tuple[int, str]]) -> int | None:
        return copy_of(point, outcome["tolerance"], candidates)

    recorded = record_ride(
        session, unit.id, None, result, window, find_copy, lambda *_: outcome["work"]
    )
    if recorded is None:
        return []
    if outcome["cut"] and recorded.new:
        note_stop(session, session.get(Ride, unit.id).job_id, DEPTH_LIMIT)
    return [node_unit(session.get(Node, i)) for i in recorded.released]


def ride_units(
    unit: Unit, ids: list[int] | None, rides: list[tuple[int, int, float]]
) -> list[Unit]:
    """The units of the rides just queued (with ids `ids`) from the node of `unit`."""
    return [
        Unit("ride", ride_id, "ride", unit.id, unit.depth, (*unit.fingerprint, (i, s)), value)
        for ride_id, (i, s, value) in zip(ids or [], rides, strict=False)
    ]


def node_unit(node: Node) -> Unit:
    value = node.eigenvalues[0] if node.eigenvalues else 0.0
    return Unit("node", node.id, node.work, node.id, node.depth, from_text(node.path), value)
