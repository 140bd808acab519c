"""A job's units of work (a node to expand or evaluate, a ride to ride): claimed by
compare-and-set under a token, kept alive by heartbeats, ended, and listed for a frontier to
order. Claim and heartbeat times are the database's clock, so that a worker whose own clock is
off cannot make its live units look stale to the sweep (`storage.sweep`)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from ridgerider.search.budget import stop_reason
from ridgerider.search.fingerprint import extend, from_text
from ridgerider.search.frontier import Unit
from storage.database import Database
from storage.jobs import lock_job, skip_pending, touch
from storage.models import UNIT_ACTIVE, Job, Node, Ride, utcnow

UnitKind = Literal["node", "ride"]
Work = Literal["expand", "evaluate", "none"]


def new_token() -> str:
    return secrets.token_hex(16)


def unit_table(kind: UnitKind) -> type[Node] | type[Ride]:
    """The table of a kind of unit."""
    return Node if kind == "node" else Ride


def database_clock(session: Session) -> ColumnElement[datetime] | datetime:
    """The database's clock, to write in a statement: PostgreSQL's now() (the transaction's
    start), evaluated by the server that every worker and sweep of a pool share, at no extra
    round trip; on SQLite, whose database is on this machine, this process's clock."""
    return func.now() if session.get_bind().dialect.name == "postgresql" else utcnow()


def database_now(session: Session) -> datetime:
    """`database_clock`'s time, read (for arithmetic such as a sweep's cut-off)."""
    clock = database_clock(session)
    return clock if isinstance(clock, datetime) else session.scalar(select(clock))


def job_of(session: Session, kind: UnitKind, unit_id: int) -> int:
    """The job a unit belongs to."""
    table = unit_table(kind)
    job_id = session.scalar(select(table.job_id).where(table.id == unit_id))
    if job_id is None:
        raise LookupError(f"no {kind} {unit_id}")
    return job_id


def claim(session: Session, kind: UnitKind, unit_id: int, token: str) -> bool:
    """Compare-and-set a pending unit to claimed under `token`; False if someone else has it,
    it is finished, or its job is cancelled."""
    table, now = unit_table(kind), database_clock(session)
    cancelled = select(Job.cancel_requested).where(Job.id == table.job_id).scalar_subquery()
    result = session.execute(
        update(table)
        .where(table.id == unit_id, table.state == "pending", cancelled.is_(False))
        .values(
            state="claimed",
            claim_token=token,
            attempts=table.attempts + 1,
            claimed_at=now,
            heartbeat_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def heartbeat(session: Session, kind: UnitKind, unit_id: int, token: str) -> bool:
    """Say the claimed unit is still being worked on; False if the claim was lost."""
    table = unit_table(kind)
    result = session.execute(
        update(table)
        .where(table.id == unit_id, table.state == "claimed", table.claim_token == token)
        .values(heartbeat_at=database_clock(session))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def settle_unit(
    session: Session, kind: UnitKind, unit_id: int, token: str | None, state: str, **values: Any
) -> bool:
    """Move a claimed unit (held under `token`; any pending or claimed unit when `token` is
    None) to a final `state`; False if the claim was lost (someone else finished it)."""
    table = unit_table(kind)
    condition = table.state == "claimed", table.claim_token == token
    if token is None:
        condition = (table.state.in_(UNIT_ACTIVE),)
    result = session.execute(
        update(table)
        .where(table.id == unit_id, *condition)
        .values(state=state, claim_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def end_unit(
    session: Session, kind: UnitKind, unit_id: int, token: str | None, state: str, reason: str
) -> list[int] | None:
    """End a unit without its work: "failed" (with `reason`) or "skipped" (a budget ran out;
    `reason` becomes the job's `stopped`). `token` None ends it whoever holds it. Returns the
    nodes a ride's end released (see `released_nodes`), or None if the claim was lost."""
    job_id = job_of(session, kind, unit_id)
    lock_job(session, job_id)
    field = "error" if kind == "node" else "failure"
    values = {field: reason} if state == "failed" else {}
    if not settle_unit(session, kind, unit_id, token, state, **values):
        return None
    job = session.get(Job, job_id, populate_existing=True)
    job.outstanding -= 1
    if state == "skipped":
        job.stopped = stop_reason(job.stopped, reason)
    touch(job)
    session.flush()
    if kind == "node":
        return []
    ride = session.get(Ride, unit_id)
    return [node.id for node in released_nodes(session, ride.from_node_id, ride.eigen_index)]


def note_stop(session: Session, job_id: int, reason: str) -> None:
    """Record `reason` as why the job stopped short (`budget.stop_reason`: after the reasons
    before it)."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    if (kept := stop_reason(job.stopped, reason)) != job.stopped:
        job.stopped = kept
        touch(job)


def skip_open(session: Session, job_id: int, reason: str) -> list[int]:
    """End every pending unit of the job that is not an evaluation as skipped, at once: a
    running budget (`ridgerider.search.budget.exhausted`) ran out, so each would be skipped
    when claimed, one transaction and one pass over the frontier each. Returns the pending
    evaluations this frees that no message was sent for (a held node whose ridge's rides were
    skipped)."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    skip_pending(session, job, Ride)
    skip_pending(session, job, Node, Node.work == "expand")
    job.stopped = stop_reason(job.stopped, reason)
    touch(job)
    session.flush()
    unsent = set(
        session.scalars(
            select(Node.id).where(
                Node.job_id == job_id, Node.state == "pending", Node.task_id.is_(None)
            )
        )
    )
    return [unit.id for unit in pending_units(session, job_id, ("evaluate",)) if unit.id in unsent]


def mark_enqueued(
    session: Session, kind: UnitKind | Literal["job"], unit_id: int, task_id: str
) -> None:
    """Note that a message for the unit (or the job's start or finalisation) was sent, and
    count it."""
    table = Job if kind == "job" else unit_table(kind)
    values: dict[str, Any] = {"enqueued_at": database_clock(session), "sends": table.sends + 1}
    if kind != "job":
        values["task_id"] = task_id
    session.execute(
        update(table)
        .where(table.id == unit_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def released_nodes(session: Session, parent_id: int, eigen_index: int) -> list[Node]:
    """The nodes that the rides from `parent_id` along eigenvector `eigen_index` (+ and -)
    created, once neither is pending or claimed any more (empty before). Until then such a node
    is held, not claimable, so that the + ride decides the copy it keeps if both reach it,
    whichever finishes first, on one runner or a pool; the last of the two releases them."""
    unfinished = session.scalar(
        select(func.count()).where(
            Ride.from_node_id == parent_id,
            Ride.eigen_index == eigen_index,
            Ride.state.in_(UNIT_ACTIVE),
        )
    )
    if unfinished:
        return []
    parent = session.get(Node, parent_id)
    pending = session.scalars(
        select(Node)
        .where(Node.job_id == parent.job_id, Node.state == "pending")
        .where(Node.depth == parent.depth + 1)
        .order_by(Node.id)
    ).all()
    return [node for node in pending if ridge_of(node.path) == (parent.path, eigen_index)]


def ridge_of(path: str) -> tuple[str, int]:
    """The path of the branch point whose ride created the node at `path`, and the ride's
    eigen index (`0+.8-` -> (`0+`, 8))."""
    parent, _, last = path.rpartition(".")
    return parent, from_text(last)[0][0]


def pending_units(
    session: Session,
    job_id: int,
    works: Sequence[str] = ("expand", "evaluate", "ride"),
    states: Sequence[str] = ("pending",),
) -> list[Unit]:
    """The job's units in `states` (pending) whose work is one of `works`, with what a
    frontier orders by; nodes held until the other ride along their ridge ends (see
    `released_nodes`) are left out."""
    units = []
    node_works = [work for work in works if work != "ride"]
    if node_works:
        nodes = session.execute(
            select(Node.id, Node.work, Node.depth, Node.path, Node.eigenvalues).where(
                Node.job_id == job_id, Node.state.in_(states), Node.work.in_(node_works)
            )
        ).all()
        riding = set(
            session.execute(
                select(Node.path, Ride.eigen_index)
                .join(Ride, Ride.from_node_id == Node.id)
                .where(Ride.job_id == job_id, Ride.state.in_(UNIT_ACTIVE))
            ).all()
        )
        units += [
            Unit("node", i, work, i, depth, from_text(path), values[0] if values else 0.0)
            for i, work, depth, path, values in nodes
            if depth == 0 or ridge_of(path) not in riding
        ]
    if "ride" in works:
        rides = session.execute(
            select(Ride.id, Ride.from_node_id, Ride.depth, Node.path, Ride.eigen_index)
            .add_columns(Ride.sign, Ride.eigenvalue)
            .join(Node, Node.id == Ride.from_node_id)
            .where(Ride.job_id == job_id, Ride.state.in_(states))
        ).all()
        units += [
            Unit("ride", i, "ride", node, depth, extend(from_text(path), index, sign), value)
            for i, node, depth, path, index, sign, value in rides
        ]
    return units


def claim_next(
    db: Database,
    job_id: int,
    key: Callable[[Unit], tuple],
    token: str,
    works: Sequence[str] = ("expand", "evaluate", "ride"),
) -> Unit | None:
    """Claim the job's pending unit (of `works`) that comes first by the frontier's `key`, or
    the next if another worker took it first; None when none is left. Each claim is its own
    transaction."""
    with db.session(readonly=True) as session:
        units = sorted(pending_units(session, job_id, works), key=key)
    for unit in units:
        with db.session() as session:
            if claim(session, unit.kind, unit.id, token):
                return unit
    return None
