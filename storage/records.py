"""What a job's units found, recorded into its DAG: the root (its start), a branch point's
rides, a ride's end merged with the points already known, an evaluated minimum kept as a
solution."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from ridgerider.search.budget import RidesFrom
from ridgerider.search.fingerprint import RETAKEN, Fingerprint, extend, from_text, to_text
from ridgerider.search.steps import CLIMB_TURNED, Outcome
from storage.jobs import lock_job, touch
from storage.models import Job, Metric, Node, Ride, Solution, metrics_json, utcnow
from storage.queries import ROOT_FINGERPRINT, root_node
from storage.units import Work, job_of, released_nodes, ridge_of, settle_unit


@dataclass(frozen=True)
class PointRecord:
    """What the database keeps of a point of the tree, named as a node's columns (its
    parameters, and the spectrum of a branch point found when a ride reached it, are
    artifacts)."""

    kind: str
    index: int
    index_is_exact: bool
    loss: float
    grad_norm: float
    eigenvalues: list[float]
    theta_sha256: str
    function_key: float | None = None
    spectrum_sha256: str | None = None
    norm_estimate: float = 0.0  # ||H||, estimated: the root's sets the engine's units


RideResult = Outcome[PointRecord]  # a ride's outcome as recorded: its point kept as a record


@dataclass(frozen=True)
class MergeWindow:
    """The ranges of loss (and of function key, when merging by function) that hold every copy
    of a new point: only the nodes inside are compared with it."""

    loss: tuple[float, float]
    function: tuple[float, float] | None = None
    kinds: tuple[str, ...] | None = None  # None: any


@dataclass(frozen=True)
class RideRecord:
    """Where a recorded ride led: the node, whether it is new, its pending work, and the nodes
    this ride released (see `released_nodes`)."""

    node_id: int | None
    new: bool
    work: Work
    released: list[int]


def lineage(parent: str, eigen_index: int, sign: int) -> str:
    """The fingerprint of a node first reached by riding (eigen_index, sign) from `parent`."""
    return hashlib.sha256(f"{parent}/{eigen_index}{sign:+d}".encode()).hexdigest()


def fingerprint_of(path: Fingerprint) -> str:
    """A node's `fingerprint` column: the hash of its `path`."""
    fingerprint = ROOT_FINGERPRINT
    for eigen_index, sign in path:
        fingerprint = lineage(fingerprint, eigen_index, sign)
    return fingerprint


def rides_taken(session: Session, job_id: int, path: Fingerprint) -> tuple[RidesFrom, bool]:
    """The rides from the job's node at `path` (none if there is no such node or it is not
    expanded yet: `RidesFrom`), and whether climbs from it are waiting for a grant."""
    node_id = select(Node.id).where(Node.job_id == job_id, Node.fingerprint == fingerprint_of(path))
    rides = session.execute(
        select(Ride.eigen_index, Ride.sign, Ride.quota, Ride.state)
        .where(Ride.from_node_id == node_id.scalar_subquery())
        .order_by(Ride.id)
    ).all()
    shared = [(i, s) for i, s, quota, state in rides if quota is None and state != "waiting"]
    granted = {(i, s): quota for i, s, quota, _ in rides if quota is not None}
    return RidesFrom(shared, granted), any(state == "waiting" for *_, state in rides)


def waiting_climbs(session: Session, job_id: int) -> int:
    """How many of the job's climbs wait for a grant: those the node budget left waiting, and
    the retakes of climbs that turned off their direction (`_turned_climbs`)."""
    waiting = select(func.count()).where(Ride.job_id == job_id, Ride.state == "waiting")
    return session.scalar(waiting) + len(_turned_climbs(session, job_id))


def _turned_climbs(session: Session, job_id: int) -> list[Ride]:
    """The job's climbs that ended "climb-turned" and have no retake yet (a ride of the same
    ridge, its sign doubled: `RETAKEN`), by node, eigen index, + before -: the order the tree
    in memory queues their retakes in, so that a node's + retake has the smaller id."""
    retake = aliased(Ride)
    retaken = (
        select(retake.id)
        .where(
            retake.from_node_id == Ride.from_node_id,
            retake.eigen_index == Ride.eigen_index,
            retake.sign == RETAKEN * Ride.sign,
        )
        .exists()
    )
    return session.scalars(
        select(Ride)
        .where(Ride.job_id == job_id, Ride.end_reason == CLIMB_TURNED, ~retaken)
        .order_by(Ride.from_node_id, Ride.eigen_index, Ride.sign.desc())
    ).all()


def _add_retakes(session: Session, job_id: int, state: str, quota: int | None) -> list[Ride]:
    """Add the retake of every turned climb of the job (`_turned_climbs`), in `state`."""
    retakes = [
        Ride(
            job_id=job_id,
            from_node_id=climb.from_node_id,
            eigen_index=climb.eigen_index,
            sign=RETAKEN * climb.sign,
            eigenvalue=climb.eigenvalue,
            depth=climb.depth,
            state=state,
            quota=quota,
        )
        for climb in _turned_climbs(session, job_id)
    ]
    session.add_all(retakes)
    session.flush()
    return retakes


@dataclass(frozen=True)
class GrantedClimb:
    """A climb granted: its ride, and its minimum's node, depth and path."""

    ride_id: int
    node_id: int
    depth: int
    path: Fingerprint
    eigen_index: int
    sign: int
    eigenvalue: float


def grant_climbs(session: Session, job_id: int, quota: int | None) -> list[GrantedClimb]:
    """Queue every waiting climb of the job with `quota` points each (None: no node budget;
    `ridgerider.search.loop.grant_waiting`), then the retakes of turned climbs; a job
    finalising goes back to running at once with them, so that no other finaliser sees it
    still. A cancelled job's waiting climbs are skipped instead."""
    lock_job(session, job_id)
    job = session.get(Job, job_id, populate_existing=True)
    if job.cancel_requested:
        skip_waiting(session, job_id)
        return []
    waiting = session.scalars(
        select(Ride).where(Ride.job_id == job_id, Ride.state == "waiting").order_by(Ride.id)
    ).all()
    for ride in waiting:
        ride.state, ride.quota = "pending", quota
    granted = []
    for ride in [*waiting, *_add_retakes(session, job_id, "pending", quota)]:
        minimum = session.get(Node, ride.from_node_id)
        depth, path = minimum.depth, minimum.path
        climb = (ride.eigen_index, ride.sign, ride.eigenvalue)
        granted.append(GrantedClimb(ride.id, ride.from_node_id, depth, from_text(path), *climb))
    job.outstanding += len(granted)
    if granted and job.status == "finalising":
        job.status = "running"
    touch(job)
    session.flush()
    return granted


def skip_waiting(session: Session, job_id: int) -> None:
    """End the job's waiting climbs as skipped, and add the retakes of its turned climbs as
    skipped: the budget will grant them nothing."""
    session.execute(
        update(Ride)
        .where(Ride.job_id == job_id, Ride.state == "waiting")
        .values(state="skipped")
        .execution_options(synchronize_session=False)
    )
    _add_retakes(session, job_id, "skipped", None)


def start_job(
    session: Session,
    job_id: int,
    root: PointRecord,
    work: Work,
    hvps: int,
    stopped: str | None = None,
) -> Node:
    """Mark the job running with its root node, which cost `hvps` to classify, and `stopped`,
    why the search ends there if it does (idempotent: a started job keeps its root). A job
    cancelled while its start was under way keeps its root, skipped, and stays cancelled."""
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
    job.stopped = stopped or job.stopped
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
        **asdict(point),
        work=work,
        state="pending" if work != "none" else "done",
    )
    session.add(node)
    session.flush()
    return node


@dataclass(frozen=True)
class QueuedRides:
    """Rides to queue from a node: its stored spectrum, the (eigen index, sign, eigenvalue) of
    each ride, the HVPs their choice cost, and how many of the last are left waiting (climbs
    the node budget's share cannot hold)."""

    spectrum_sha256: str
    rides: Sequence[tuple[int, int, float]]
    hvps: int
    waiting: int = 0


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
    job_id = job_of(session, "node", node_id)
    lock_job(session, job_id)
    if not settle_unit(session, "node", node_id, token, "done", spectrum_sha256=spectrum_sha256):
        return None
    job = session.get(Job, job_id, populate_existing=True)
    job.outstanding -= 1
    created = _queue_rides(session, job, node_id, rides, hvps)
    touch(job)
    session.flush()
    return created


def _queue_rides(
    session: Session,
    job: Job,
    node_id: int,
    rides: Sequence[tuple[int, int, float]],
    hvps: int,
    waiting: int = 0,
) -> list[int]:
    """Queue `rides` from the node (skipped in a cancelled job), the last `waiting` of them
    left waiting for a grant; the ids of the pending ones."""
    node = session.get(Node, node_id, populate_existing=True)
    state = "skipped" if job.cancel_requested else "pending"
    kept = len(rides) - waiting
    created = [
        Ride(
            job_id=job.id,
            from_node_id=node_id,
            eigen_index=index,
            sign=sign,
            eigenvalue=value,
            depth=node.depth,
            state=state if position < kept or state == "skipped" else "waiting",
        )
        for position, (index, sign, value) in enumerate(rides)
    ]
    session.add_all(created)
    job.outstanding += sum(ride.state == "pending" for ride in created)
    job.hvps += hvps
    session.flush()
    return [ride.id for ride in created if ride.state == "pending"]


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
    if not settle_unit(session, "ride", ride_id, token, state, **stats, **failure):
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
    touch(job)
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
    if ridge_of(copy.path) != (parent.path, ride.eigen_index):
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
    for column, value in asdict(point).items():
        setattr(node, column, value)


def _candidates(session: Session, job_id: int, window: MergeWindow) -> list[tuple[int, str]]:
    """(id, theta sha256) of the job's nodes inside `window`, by id: range scans of the
    (job, loss) and (job, function key) indexes."""
    inside = Node.loss.between(*window.loss)
    if window.function is not None:
        inside = or_(inside, Node.function_key.between(*window.function))
    if window.kinds is not None:
        inside = and_(inside, Node.kind.in_(window.kinds))
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
    climbs: QueuedRides | None = None,
) -> list[int] | None:
    """Keep an evaluated minimum as a solution with its metrics, and queue the `climbs` from it
    (`SearchSpec.climb_minima`) with its spectrum; the ids of the climbs queued, or None if the
    claim was lost."""
    job_id = job_of(session, "node", node_id)
    lock_job(session, job_id)
    spectrum = {} if climbs is None else {"spectrum_sha256": climbs.spectrum_sha256}
    if not settle_unit(session, "node", node_id, token, "done", **spectrum):
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
    created = []
    if climbs is not None:
        created = _queue_rides(session, job, node_id, climbs.rides, climbs.hvps, climbs.waiting)
    touch(job)
    session.flush()
    return created
