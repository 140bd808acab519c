"""A job's life in the database: create, claim work units, record what they found, finish.

Every write that changes a job's counters first locks the job's row (`lock_job`, an UPDATE: a
row lock on PostgreSQL; on SQLite every write transaction holds the database's write lock).
That serialises merges, so that two workers reaching one critical point at once give one node
and two edges, and counters never race; `claim_finalisation` then lets exactly one caller
finalise the job.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from ridgerider.search.budget import Progress
from ridgerider.search.fingerprint import Fingerprint, extend, from_text, to_text
from ridgerider.search.frontier import Unit
from storage.database import Database
from storage.models import (
    Job,
    Metric,
    Node,
    PairMetric,
    Ride,
    Solution,
    metrics_json,
    utcnow,
)

UnitKind = Literal["node", "ride"]
Work = Literal["expand", "evaluate", "none"]
ACTIVE = ("pending", "claimed")
MAX_ATTEMPTS = 3
MAX_SENDS = 8  # messages for one unit, or for one job's start and finalisation, in all


class IdempotencyKeyReusedError(ValueError):
    """An idempotency key sent again with a different request."""


class JobNotFoundError(LookupError):
    """No job has that id (or the caller may not see it)."""


@dataclass(frozen=True)
class PointRecord:
    """What the database keeps of a point of the tree (its parameters, and the spectrum of a
    branch point found when a ride reached it, are artifacts)."""

    kind: str
    index: int
    index_is_exact: bool
    loss: float
    grad_norm: float
    eigenvalues: list[float]
    theta_sha256: str
    function_key: float | None = None
    spectrum_sha256: str | None = None


@dataclass(frozen=True)
class MergeWindow:
    """The ranges of loss (and of function key, when merging by function) that hold every copy
    of a new point: only the nodes inside are compared with it."""

    loss: tuple[float, float]
    function: tuple[float, float] | None = None


def new_token() -> str:
    return secrets.token_hex(16)


def lineage(parent: str, eigen_index: int, sign: int) -> str:
    """The fingerprint of a node first reached by riding (eigen_index, sign) from `parent`."""
    return hashlib.sha256(f"{parent}/{eigen_index}{sign:+d}".encode()).hexdigest()


ROOT_FINGERPRINT = hashlib.sha256(b"root").hexdigest()


def create_job(
    session: Session,
    spec: dict[str, Any],
    *,
    owner: str | None = None,
    idempotency_key: str | None = None,
    allow_import: bool = True,
) -> Job:
    """A queued job for `spec` (a SearchSpec as JSON). With an `idempotency_key`, the job this
    owner already created with that key is returned instead of a new one. `allow_import` says
    whether its problem may name a module to import (no for jobs from the network).

    Raises:
        IdempotencyKeyReusedError: the key's job was made from another spec.
    """
    if idempotency_key is not None:
        existing = session.scalar(
            select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key)
        )
        if existing is not None:
            if existing.spec != json.loads(json.dumps(spec)):  # as stored: tuples are lists
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {idempotency_key!r} was used for job {existing.id} with "
                    "another spec; use a new key for a new job"
                )
            return existing
    job = Job(
        spec=spec,
        problem=spec["problem"],
        owner=owner,
        idempotency_key=idempotency_key,
        allow_import=allow_import,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int, owner: str | None = None) -> Job:
    """The job, if it exists and (when `owner` is given) belongs to `owner`.

    Raises:
        JobNotFoundError: otherwise.
    """
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        raise JobNotFoundError(f"no job {job_id}")
    return job


def job_state(session: Session, job_id: int) -> tuple[int, str] | None:
    """The job's record counter and status (None if there is no such job): what changes when
    anything about the job does. One primary-key lookup."""
    jobs = Job.__table__
    found = select(jobs.c.merge_lock, jobs.c.status).where(jobs.c.id == job_id)
    row = session.connection().execute(found).first()
    return None if row is None else (row.merge_lock, row.status)


def submission_load(session: Session, owner: str, window: timedelta) -> tuple[int, int, float]:
    """For quotas: the owner's jobs queued, running or finalising; the jobs it created in the
    last `window`; and the age in seconds of the oldest of those (0 if none)."""
    active = session.scalar(
        select(func.count()).where(
            Job.owner == owner, Job.status.in_(("queued", "running", "finalising"))
        )
    )
    now = utcnow()
    recent, oldest = session.execute(
        select(func.count(), func.min(Job.created_at)).where(
            Job.owner == owner, Job.created_at > now - window
        )
    ).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return active, recent, (now - oldest).total_seconds() if oldest is not None else 0.0


def job_version(session: Session, job_id: int, owner: str) -> int | None:
    """The job's record counter, if the job exists and belongs to `owner` (else None): every
    record bumps it under the job's lock, so it versions all that the job has stored. One index
    lookup, no ORM load."""
    jobs = Job.__table__
    found = select(jobs.c.merge_lock).where(jobs.c.id == job_id, jobs.c.owner == owner)
    return session.connection().execute(found).scalar()


def lock_job(session: Session, job_id: int) -> None:
    """Take the job's lock for the rest of the transaction. It bumps the job's record counter,
    so every change to what the job has stored must go through here: the API's caches of pages
    and progress are keyed by that counter (`job_version`)."""
    session.execute(update(Job).where(Job.id == job_id).values(merge_lock=Job.merge_lock + 1))


def root_node(session: Session, job_id: int) -> Node | None:
    """The job's root node (its start), if it has started."""
    return session.scalar(
        select(Node).where(Node.job_id == job_id, Node.fingerprint == ROOT_FINGERPRINT)
    )


def start_job(session: Session, job_id: int, root: PointRecord, work: Work, hvps: int) -> Node:
    """Mark the job running with its root node, which cost `hvps` to classify (idempotent: a
    started job keeps its root). A job cancelled while its start was under way keeps its root,
    skipped, and stays cancelled."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    existing = root_node(session, job_id)
    if existing is not None:
        return existing
    root_node_ = _add_node(session, job_id, ROOT_FINGERPRINT, (), 0, root, work)
    if job.cancel_requested:
        root_node_.state = "skipped"
        session.flush()
        return root_node_
    job.status = "running"
    job.started_at = utcnow()
    job.outstanding = int(work != "none")
    job.hvps += hvps
    session.flush()
    return root_node_


def _add_node(
    session: Session,
    job_id: int,
    lineage_hash: str,
    path: Fingerprint,
    depth: int,
    point: PointRecord,
    work: Work,
) -> Node:
    node = Node(
        job_id=job_id,
        fingerprint=lineage_hash,
        path=to_text(path),
        depth=depth,
        kind=point.kind,
        index=point.index,
        index_is_exact=point.index_is_exact,
        loss=point.loss,
        grad_norm=point.grad_norm,
        eigenvalues=point.eigenvalues,
        function_key=point.function_key,
        theta_sha256=point.theta_sha256,
        spectrum_sha256=point.spectrum_sha256,
        work=work,
        state="pending" if work != "none" else "done",
    )
    session.add(node)
    session.flush()
    return node


def claim(session: Session, kind: UnitKind, unit_id: int, token: str) -> bool:
    """Compare-and-set a pending unit to claimed under `token`; False if someone else has it,
    it is finished, or its job is cancelled."""
    table = Node if kind == "node" else Ride
    cancelled = select(Job.cancel_requested).where(Job.id == table.job_id).scalar_subquery()
    result = session.execute(
        update(table)
        .where(table.id == unit_id, table.state == "pending", cancelled.is_(False))
        .values(
            state="claimed",
            claim_token=token,
            attempts=table.attempts + 1,
            claimed_at=utcnow(),
            heartbeat_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def heartbeat(session: Session, kind: UnitKind, unit_id: int, token: str) -> bool:
    """Say the claimed unit is still being worked on; False if the claim was lost."""
    table = Node if kind == "node" else Ride
    result = session.execute(
        update(table)
        .where(table.id == unit_id, table.state == "claimed", table.claim_token == token)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _settle_unit(
    session: Session, kind: UnitKind, unit_id: int, token: str | None, state: str, **values: Any
) -> bool:
    """Move a claimed unit (held under `token`; any pending or claimed unit when `token` is
    None) to a final `state`; False if the claim was lost (someone else finished it)."""
    table = Node if kind == "node" else Ride
    condition = table.state == "claimed", table.claim_token == token
    if token is None:
        condition = (table.state.in_(ACTIVE),)
    result = session.execute(
        update(table)
        .where(table.id == unit_id, *condition)
        .values(state=state, claim_token=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _job_of(session: Session, kind: UnitKind, unit_id: int) -> int:
    table = Node if kind == "node" else Ride
    job_id = session.scalar(select(table.job_id).where(table.id == unit_id))
    if job_id is None:
        raise LookupError(f"no {kind} {unit_id}")
    return job_id


def record_expansion(
    session: Session,
    node_id: int,
    token: str,
    spectrum_sha256: str,
    rides: Sequence[tuple[int, int, float]],
    hvps: int,
) -> list[int] | None:
    """The saddle's eigenpairs are stored and its rides, (eigen index, sign, eigenvalue), are
    queued (or skipped, in a cancelled job). Returns the ids of the new pending rides, or None
    if the claim was lost."""
    job_id = _job_of(session, "node", node_id)
    lock_job(session, job_id)
    if not _settle_unit(session, "node", node_id, token, "done", spectrum_sha256=spectrum_sha256):
        return None
    node = session.get(Node, node_id, populate_existing=True)
    job = session.get(Job, job_id, populate_existing=True)
    state = "skipped" if job.cancel_requested else "pending"
    created = [
        Ride(
            job_id=job_id,
            from_node_id=node_id,
            eigen_index=index,
            sign=sign,
            eigenvalue=value,
            depth=node.depth,
            state=state,
        )
        for index, sign, value in rides
    ]
    session.add_all(created)
    job.outstanding += (len(created) if state == "pending" else 0) - 1
    job.hvps += hvps
    _touch(job)
    session.flush()
    return [ride.id for ride in created if ride.state == "pending"]


@dataclass(frozen=True)
class RideResult:
    """What a ride gave: its statistics, and the critical point it settled on (or a failure)."""

    steps: int
    hvps: int
    end_reason: str
    point: PointRecord | None = None
    failure: str | None = None


@dataclass(frozen=True)
class RideRecord:
    """Where a recorded ride led: the node, whether it is new, its pending work, and the nodes
    this ride released (see `released_nodes`)."""

    node_id: int | None
    new: bool
    work: Work
    released: list[int]


def record_ride(
    session: Session,
    ride_id: int,
    token: str,
    result: RideResult,
    window: MergeWindow,
    find_copy: Callable[[list[tuple[int, str]]], int | None],
    work_of: Callable[[PointRecord, int], Work],
) -> RideRecord | None:
    """Record a ride's outcome, merging the point it reached into the job's DAG.

    Under the job's lock, `find_copy` gets the (node id, theta sha256) of the job's nodes inside
    `window` (by id) and returns the one the new point copies, if any; a new node gets the work
    `work_of(point, depth)` says. A copy of a node that the ride along the same ridge in the
    other direction (a larger id) created takes this ride's point and path (see
    `released_nodes`). Returns None if the claim was lost.
    """
    ride = session.get(Ride, ride_id)
    if ride is None:
        raise LookupError(f"no ride {ride_id}")
    lock_job(session, ride.job_id)
    job = session.get(Job, ride.job_id, populate_existing=True)
    stats = {"steps": result.steps, "hvps": result.hvps, "end_reason": result.end_reason}
    state = "done" if result.point is not None else "failed"
    failure = {} if result.point is not None else {"failure": result.failure}
    if not _settle_unit(session, "ride", ride_id, token, state, **stats, **failure):
        return None
    node_id, new, work = None, False, "none"
    if result.point is not None:
        parent = session.get(Node, ride.from_node_id)
        path = extend(from_text(parent.path), ride.eigen_index, ride.sign)
        lineage_hash = lineage(parent.fingerprint, ride.eigen_index, ride.sign)
        node_id = find_copy(_candidates(session, job.id, window))
        if node_id is None:
            work = work_of(result.point, parent.depth + 1)
            node = _add_node(
                session, job.id, lineage_hash, path, parent.depth + 1, result.point, work
            )
            if work != "none" and job.cancel_requested:
                node.state, work = "skipped", "none"
            job.outstanding += int(work != "none")
            node_id, new = node.id, True
        else:
            copy = session.get(Node, node_id)
            if _created_by_later_sibling(session, ride, copy):
                _take_over(copy, result.point, path, lineage_hash)
        session.execute(
            update(Ride)
            .where(Ride.id == ride_id)
            .values(to_node_id=node_id)
            .execution_options(synchronize_session=False)
        )
    job.outstanding -= 1
    job.hvps += result.hvps
    _touch(job)
    session.flush()
    released = [node.id for node in released_nodes(session, ride.from_node_id, ride.eigen_index)]
    return RideRecord(node_id, new, work, released)


def _created_by_later_sibling(session: Session, ride: Ride, copy: Node) -> bool:
    """Whether the ride along `ride`'s ridge in the other direction, with a larger id, created
    `copy`, still held (pending): then the copy takes `ride`'s point, so that which point a node
    keeps does not depend on which of the two finished first."""
    parent = session.get(Node, ride.from_node_id)
    if copy.state != "pending" or copy.depth == 0:
        return False
    if _ridge_of(copy.path) != (parent.path, ride.eigen_index):
        return False
    _, sign = from_text(copy.path)[-1]
    creator = session.scalar(
        select(Ride.id).where(
            Ride.from_node_id == parent.id, Ride.eigen_index == ride.eigen_index, Ride.sign == sign
        )
    )
    return creator is not None and creator > ride.id


def _take_over(node: Node, point: PointRecord, path: Fingerprint, lineage_hash: str) -> None:
    node.path, node.fingerprint = to_text(path), lineage_hash
    node.kind, node.index, node.index_is_exact = point.kind, point.index, point.index_is_exact
    node.loss, node.grad_norm, node.eigenvalues = point.loss, point.grad_norm, point.eigenvalues
    node.function_key, node.theta_sha256 = point.function_key, point.theta_sha256
    node.spectrum_sha256 = point.spectrum_sha256


def released_nodes(session: Session, parent_id: int, eigen_index: int) -> list[Node]:
    """The nodes that the rides from `parent_id` along eigenvector `eigen_index` (+ and -)
    created, once neither is pending or claimed any more (empty before). Until then such a node
    is held, not claimable, so that the + ride decides the copy it keeps if both reach it,
    whichever finishes first, on one runner or a pool; the last of the two releases them."""
    unfinished = session.scalar(
        select(func.count()).where(
            Ride.from_node_id == parent_id,
            Ride.eigen_index == eigen_index,
            Ride.state.in_(ACTIVE),
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
    return [node for node in pending if _ridge_of(node.path) == (parent.path, eigen_index)]


def _ridge_of(path: str) -> tuple[str, int]:
    """The path of the branch point whose ride created the node at `path`, and the ride's
    eigen index (`0+.8-` -> (`0+`, 8))."""
    parent, _, last = path.rpartition(".")
    return parent, from_text(last)[0][0]


def _candidates(session: Session, job_id: int, window: MergeWindow) -> list[tuple[int, str]]:
    """(id, theta sha256) of the job's nodes inside `window`, by id: range scans of the
    (job, loss) and (job, function key) indexes."""
    inside = Node.loss.between(*window.loss)
    if window.function is not None:
        inside = or_(inside, Node.function_key.between(*window.function))
    found = session.execute(
        select(Node.id, Node.theta_sha256).where(Node.job_id == job_id, inside).order_by(Node.id)
    ).all()
    return [(node_id, sha) for node_id, sha in found]


def record_evaluation(
    session: Session,
    node_id: int,
    token: str,
    weights_sha256: str,
    metrics: dict[str, float],
    predictions: bytes | None,
) -> int | None:
    """Keep an evaluated minimum as a solution with its metrics; its id, or None if the claim
    was lost."""
    job_id = _job_of(session, "node", node_id)
    lock_job(session, job_id)
    if not _settle_unit(session, "node", node_id, token, "done"):
        return None
    solution = Solution(
        job_id=job_id,
        node_id=node_id,
        weights_sha256=weights_sha256,
        predictions=predictions,
        metrics_json=metrics_json(metrics),
    )
    session.add(solution)
    session.flush()
    session.add_all(
        Metric(solution_id=solution.id, job_id=job_id, name=name, value=float(value))
        for name, value in metrics.items()
    )
    job = session.get(Job, job_id, populate_existing=True)
    job.outstanding -= 1
    _touch(job)
    session.flush()
    return solution.id


def end_unit(
    session: Session, kind: UnitKind, unit_id: int, token: str | None, state: str, reason: str
) -> list[int] | None:
    """End a unit without its work: "failed" (with `reason`) or "skipped" (a budget ran out;
    `reason` becomes the job's `stopped`). `token` None ends it whoever holds it. Returns the
    nodes a ride's end released (see `released_nodes`), or None if the claim was lost."""
    job_id = _job_of(session, kind, unit_id)
    lock_job(session, job_id)
    field = "error" if kind == "node" else "failure"
    values = {field: reason} if state == "failed" else {}
    if not _settle_unit(session, kind, unit_id, token, state, **values):
        return None
    job = session.get(Job, job_id, populate_existing=True)
    job.outstanding -= 1
    if state == "skipped":
        job.stopped = job.stopped or reason
    _touch(job)
    session.flush()
    if kind == "node":
        return []
    ride = session.get(Ride, unit_id)
    return [node.id for node in released_nodes(session, ride.from_node_id, ride.eigen_index)]


def _touch(job: Job) -> None:
    if job.started_at is not None:
        job.run_seconds = elapsed_seconds(job)


def elapsed_seconds(job: Job) -> float:
    """Wall seconds since the job's clock started (0 before it started). SQLite hands back
    naive datetimes; they were stored in UTC."""
    started = job.started_at
    if started is None:
        return 0.0
    if started.tzinfo is None:
        started = started.replace(tzinfo=utcnow().tzinfo)
    return (utcnow() - started).total_seconds()


def cancel_job(session: Session, job_id: int) -> list[str]:
    """Set the job's cancel flag: no unit can be claimed after this commits, pending units are
    skipped (what was found is kept), and units in flight finish. Returns the task ids of the
    skipped units, to revoke their messages."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    if job.status in ("finished", "failed", "cancelled") or job.cancel_requested:
        return []
    job.cancel_requested = True
    job.cancelled_at = utcnow()
    job.stopped = "cancelled"
    task_ids: list[str] = []
    for table in (Node, Ride):
        pending = session.execute(
            select(table.id, table.task_id).where(table.job_id == job_id, table.state == "pending")
        ).all()
        session.execute(
            update(table)
            .where(table.job_id == job_id, table.state == "pending")
            .values(state="skipped")
            .execution_options(synchronize_session=False)
        )
        job.outstanding -= len(pending)
        task_ids += [task_id for _, task_id in pending if task_id]
    if job.status == "queued":  # never started: nothing to finalise
        job.status = "cancelled"
        job.finished_at = utcnow()
    return task_ids


def mark_enqueued(
    session: Session, kind: UnitKind | Literal["job"], unit_id: int, task_id: str
) -> None:
    """Note that a message for the unit (or the job's start or finalisation) was sent, and
    count it."""
    table = {"node": Node, "ride": Ride, "job": Job}[kind]
    values: dict[str, Any] = {"enqueued_at": utcnow(), "sends": table.sends + 1}
    if kind != "job":
        values["task_id"] = task_id
    session.execute(
        update(table)
        .where(table.id == unit_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Message:
    """A unit of work as a task message names it."""

    job_id: int
    kind: UnitKind
    unit_id: int
    work: str  # "expand" | "evaluate" for nodes, "ride" for rides


@dataclass(frozen=True)
class LostWork:
    """What a sweep found: units to send again, jobs to start or finalise again."""

    units: list[Message]
    jobs_to_start: list[int]
    jobs_to_finalise: list[int]


def lost_work(session: Session, stale_after: timedelta, requeue_after: timedelta) -> LostWork:
    """In jobs sent to the worker pool: give back units whose worker stopped beating
    (`stale_after`; see `_give_back_stale`), and list the pending units, queued jobs and
    finalising jobs whose message was sent more than `requeue_after` ago (or never): their
    messages may be lost (a restarted broker). Sending one twice is harmless: claims are
    compare-and-set. What was sent MAX_SENDS times already is given up instead (`_give_up`):
    a message that no worker can act on must not go round forever. A running job with
    nothing outstanding is finalised."""
    now = utcnow()
    pool = Job.enqueued_at.is_not(None)  # jobs run in-process never were
    running = select(Job.id).where(Job.status == "running", Job.cancel_requested.is_(False), pool)
    finalise_now = _give_back_stale(session, pool, now - stale_after)
    old = now - requeue_after
    units: list[Message] = []
    for table, kind in ((Node, "node"), (Ride, "ride")):
        work = table.work if table is Node else literal("ride")
        lost = session.execute(
            select(table.job_id, table.id, work, table.sends).where(
                table.job_id.in_(running),
                table.state == "pending",
                or_(table.enqueued_at.is_(None), table.enqueued_at < old),
            )
        ).all()
        for job_id, unit_id, unit_work, sends in lost:
            if sends < MAX_SENDS:
                units.append(Message(job_id, kind, unit_id, unit_work))
            else:
                reason = f"gave up after {sends} messages: no worker took it"
                end_unit(session, kind, unit_id, None, "failed", reason)
                finalise_now.add(job_id)
    # A worker that died between a job's last record and claiming its finalisation.
    idle = select(Job.id).where(Job.status == "running", pool, Job.outstanding == 0)
    finalise_now.update(session.scalars(idle))
    unsent = Job.enqueued_at < old
    jobs = {}
    for status in ("queued", "finalising"):
        found = session.execute(select(Job.id, Job.sends).where(Job.status == status, unsent))
        jobs[status] = [job_id for job_id, sends in found if not _give_up(session, job_id, sends)]
    finalise_now = {job_id for job_id in finalise_now if claim_finalisation(session, job_id)}
    return LostWork(units, jobs["queued"], sorted({*jobs["finalising"], *finalise_now}))


def _give_up(session: Session, job_id: int, sends: int) -> bool:
    """Fail the job if its start or finalisation was sent MAX_SENDS times already."""
    if sends < MAX_SENDS:
        return False
    job = session.get(Job, job_id)
    step = "start" if job.status == "queued" else "finalisation"
    fail_job(session, job_id, f"gave up after {sends} messages: no worker could do its {step}")
    return True


def _give_back_stale(session: Session, pool: ColumnElement[bool], before: datetime) -> set[int]:
    """Claimed units whose heartbeat stopped before `before`: back to pending; skipped in a
    cancelled job; failed after MAX_ATTEMPTS tries (a unit that kills its worker or outlives
    the time limit every time must not loop forever). Returns the jobs touched."""
    jobs = select(Job.id).where(Job.status == "running", pool)
    touched = set()
    for table, kind in ((Node, "node"), (Ride, "ride")):
        stale = session.execute(
            select(table.id, table.job_id, table.attempts, Job.cancel_requested)
            .join(Job, Job.id == table.job_id)
            .where(table.job_id.in_(jobs), table.state == "claimed", table.heartbeat_at < before)
        ).all()
        for unit_id, job_id, attempts, cancelled in stale:
            touched.add(job_id)
            if cancelled:
                end_unit(session, kind, unit_id, None, "skipped", "cancelled")
            elif attempts >= MAX_ATTEMPTS:
                reason = (
                    f"gave up after {attempts} attempts: its worker died or timed out each time"
                )
                end_unit(session, kind, unit_id, None, "failed", reason)
            else:
                session.execute(
                    update(table)
                    .where(table.id == unit_id, table.state == "claimed")
                    .values(state="pending", claim_token=None)
                    .execution_options(synchronize_session=False)
                )
    return touched


def claim_finalisation(session: Session, job_id: int) -> bool:
    """Whether the caller is the one to finalise the job: a compare-and-set of a running job
    with nothing outstanding to `finalising`, so exactly one caller gets True."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.outstanding == 0)
        .values(status="finalising")
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def record_finalisation(
    session: Session,
    job_id: int,
    pairs: dict[tuple[int, int], dict[str, float]],
    stats: dict[str, Any],
) -> None:
    """Store the pairwise metrics (keyed by solution ids) and the job's statistics; the job is
    finished, or cancelled if that was asked. Only a finalising job is changed."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    if job.status != "finalising":
        return  # a duplicate finalisation: the first one recorded it
    session.execute(delete(PairMetric).where(PairMetric.job_id == job_id))
    session.add_all(
        PairMetric(a_id=a, b_id=b, name=name, value=value, job_id=job_id)
        for (a, b), values in pairs.items()
        for name, value in values.items()
    )
    job.stats = stats
    job.status = "cancelled" if job.cancel_requested else "finished"
    job.finished_at = utcnow()
    _touch(job)


def fail_job(session: Session, job_id: int, error: str) -> None:
    """The job cannot go on (its problem does not load, its start is no critical point)."""
    job = session.get(Job, job_id)
    job.status = "failed"
    job.error = error
    job.finished_at = utcnow()


def reclaim(session: Session, job_id: int, stale_after: timedelta | None = None) -> int:
    """Put claimed units of the job whose heartbeat is older than `stale_after` (all claimed
    units if None: their worker is known dead) back to pending. Returns how many."""
    count = 0
    for table in (Node, Ride):
        condition = [table.job_id == job_id, table.state == "claimed"]
        if stale_after is not None:
            condition.append(table.heartbeat_at < utcnow() - stale_after)
        result = session.execute(
            update(table)
            .where(*condition)
            .values(state="pending", claim_token=None)
            .execution_options(synchronize_session=False)
        )
        count += result.rowcount
    return count


def resume_clock(session: Session, job_id: int) -> None:
    """Restart the job's wall clock where it stopped, so a resume keeps the time budget."""
    job = session.get(Job, job_id)
    job.started_at = utcnow() - timedelta(seconds=job.run_seconds)


def pending_units(
    session: Session, job_id: int, works: Sequence[str] = ("expand", "evaluate", "ride")
) -> list[Unit]:
    """The job's pending units whose work is one of `works`, with what a frontier orders by;
    nodes held until the other ride along their ridge ends (see `released_nodes`) are left
    out."""
    units = []
    node_works = [work for work in works if work != "ride"]
    if node_works:
        nodes = session.execute(
            select(Node.id, Node.work, Node.depth, Node.path, Node.eigenvalues).where(
                Node.job_id == job_id, Node.state == "pending", Node.work.in_(node_works)
            )
        ).all()
        riding = set(
            session.execute(
                select(Node.path, Ride.eigen_index)
                .join(Ride, Ride.from_node_id == Node.id)
                .where(Ride.job_id == job_id, Ride.state.in_(ACTIVE))
            ).all()
        )
        units += [
            Unit("node", i, work, i, depth, from_text(path), values[0] if values else 0.0)
            for i, work, depth, path, values in nodes
            if depth == 0 or _ridge_of(path) not in riding
        ]
    if "ride" in works:
        rides = session.execute(
            select(Ride.id, Ride.from_node_id, Ride.depth, Node.path, Ride.eigen_index)
            .add_columns(Ride.sign, Ride.eigenvalue)
            .join(Node, Node.id == Ride.from_node_id)
            .where(Ride.job_id == job_id, Ride.state == "pending")
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


def counts(session: Session, job_id: int) -> dict[str, int]:
    """Progress: nodes by kind, rides done, failed and skipped, expansions skipped (budgets),
    solutions, HVPs, and units outstanding."""
    job = session.get(Job, job_id, populate_existing=True)
    kinds = dict(
        session.execute(
            select(Node.kind, func.count()).where(Node.job_id == job_id).group_by(Node.kind)
        ).all()
    )
    rides = dict(
        session.execute(
            select(Ride.state, func.count()).where(Ride.job_id == job_id).group_by(Ride.state)
        ).all()
    )
    solutions = session.scalar(select(func.count()).where(Solution.job_id == job_id))
    skipped_nodes = session.scalar(
        select(func.count()).where(Node.job_id == job_id, Node.state == "skipped")
    )
    return {
        "nodes": sum(kinds.values()),
        "minima": kinds.get("minimum", 0),
        "saddles": kinds.get("saddle", 0),
        "branch_points": kinds.get("branch", 0),
        "ride_ends": kinds.get("ride-end", 0),
        "degenerate": kinds.get("degenerate", 0),
        "rides": rides.get("done", 0),
        "failed_rides": rides.get("failed", 0),
        "skipped_rides": rides.get("skipped", 0),
        "skipped_expansions": skipped_nodes,
        "solutions": solutions,
        "hvps": job.hvps,
        "outstanding": job.outstanding,
    }


def progress(session: Session, job_id: int) -> Progress:
    """What the job has spent and found, for its budgets: nodes, solutions, HVPs, seconds."""
    job = session.get(Job, job_id, populate_existing=True)
    nodes = session.scalar(select(func.count()).where(Node.job_id == job_id))
    solutions = session.scalar(select(func.count()).where(Solution.job_id == job_id))
    return Progress(nodes, solutions, job.hvps, elapsed_seconds(job))
