"""Recovery of lost work in a pool's jobs: units whose worker stopped beating go back to
pending, messages that may be lost are sent again, and what no worker can do is given up after
a bound, so that nothing is lost and nothing goes round forever."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, literal, or_, select, update
from sqlalchemy.orm import Session

from storage.jobs import claim_finalisation, fail_job
from storage.models import Job, Node, Ride
from storage.units import UnitKind, database_now, end_unit

MAX_ATTEMPTS = 3
MAX_SENDS = 8  # messages for one unit, or for one job's start and finalisation, in all


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
    messages may be lost (a restarted broker); and a unit of each job whose kept outcomes
    nobody is left to record (`_unrecorded`). Sending one twice is harmless: claims are
    compare-and-set. What was sent MAX_SENDS times already is given up instead (`_give_up`):
    a message that no worker can act on must not go round forever. A running job with
    nothing outstanding is finalised."""
    now = database_now(session)
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
    units += _unrecorded(session, running, now - stale_after)
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


def _unrecorded(session: Session, running: Select, before: datetime) -> list[Message]:
    """A message for one computed unit of each running job that has outcomes kept for their
    turn since before `before` and no claimed unit: the worker that would record them died
    (`storage.turns`), and a unit's task records what is due before it claims."""
    messages = {}
    for table, kind in ((Node, "node"), (Ride, "ride")):
        work = table.work if table is Node else literal("ride")
        found = session.execute(
            select(table.job_id, table.id, work).where(
                table.job_id.in_(running),
                table.state == "computed",
                table.heartbeat_at < before,
            )
        ).all()
        for job_id, unit_id, unit_work in found:
            messages.setdefault(job_id, Message(job_id, kind, unit_id, unit_work))
    claimed = set()
    for table in (Node, Ride):
        claimed.update(
            session.scalars(
                select(table.job_id).where(table.job_id.in_(messages), table.state == "claimed")
            )
        )
    return [message for job_id, message in messages.items() if job_id not in claimed]


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
                _put_back(session, table, table.id == unit_id)
    return touched


def reclaim(session: Session, job_id: int, stale_after: timedelta | None = None) -> int:
    """Put claimed units of the job whose heartbeat is older than `stale_after` (all claimed
    units if None: their worker is known dead) back to pending. Returns how many."""
    count = 0
    for table in (Node, Ride):
        condition = [table.job_id == job_id]
        if stale_after is not None:
            condition.append(table.heartbeat_at < database_now(session) - stale_after)
        count += _put_back(session, table, *condition)
    return count


def _put_back(
    session: Session, table: type[Node] | type[Ride], *condition: ColumnElement[bool]
) -> int:
    """Claimed units of `table` meeting `condition` back to pending, unclaimed; how many."""
    result = session.execute(
        update(table)
        .where(table.state == "claimed", *condition)
        .values(state="pending", claim_token=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
