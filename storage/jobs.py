"""A job's life in the database: create it, look it up, lock it, cancel it, fail it, finalise
it. Its units of work are in `storage.units`, what they find in `storage.records`, the recovery
of lost work in `storage.sweep` and its progress counts in `storage.progress`.

Every write that changes a job's counters first locks the job's row (`lock_job`, an UPDATE: a
row lock on PostgreSQL; on SQLite every write transaction holds the database's write lock).
That serialises merges, so that two workers reaching one critical point at once give one node
and two edges, and counters never race; `claim_finalisation` then lets exactly one caller
finalise the job.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from storage.models import JOB_ENDED, JOB_IN_FLIGHT, Job, Node, PairMetric, Ride, utcnow


class IdempotencyKeyReusedError(ValueError):
    """An idempotency key sent again with a different request."""


class JobNotFoundError(LookupError):
    """No job has that id (or the caller may not see it)."""


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


def adopt_unowned(session: Session, owner: str) -> int:
    """Give the jobs that no key owns (those run on the command line) to `owner`, so that a
    dashboard signed in as `owner` shows them; returns how many."""
    return session.execute(update(Job).where(Job.owner.is_(None)).values(owner=owner)).rowcount


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
        select(func.count()).where(Job.owner == owner, Job.status.in_(JOB_IN_FLIGHT))
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


def touch(job: Job) -> None:
    """Bring the job's run time up to now (on every record)."""
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
    if job.status in JOB_ENDED or job.cancel_requested:
        return []
    job.cancel_requested = True
    job.cancelled_at = utcnow()
    job.stopped = "cancelled"
    task_ids = skip_pending(session, job, Node) + skip_pending(session, job, Ride)
    if job.status == "queued":  # never started: nothing to finalise
        job.status = "cancelled"
        job.finished_at = utcnow()
    return task_ids


def skip_pending(
    session: Session, job: Job, table: type[Node] | type[Ride], *where: ColumnElement[bool]
) -> list[str]:
    """Mark `job`'s pending units in `table` (those meeting `where` too) skipped, take them off
    its outstanding count, and return the task ids of those a message was sent for. The rows
    come from the update itself: a claim that commits while it waits on a row keeps that unit,
    which stays outstanding until its worker finishes it. The caller holds the job's lock."""
    skipped = session.execute(
        update(table)
        .where(table.job_id == job.id, table.state == "pending", *where)
        .values(state="skipped")
        .returning(table.id, table.task_id)
        .execution_options(synchronize_session=False)
    ).all()
    job.outstanding -= len(skipped)
    return [task_id for _, task_id in skipped if task_id]


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
    touch(job)


def fail_job(session: Session, job_id: int, error: str) -> None:
    """The job cannot go on (its problem does not load, its start is no critical point)."""
    job = session.get(Job, job_id)
    job.status = "failed"
    job.error = error
    job.finished_at = utcnow()


def resume_clock(session: Session, job_id: int) -> None:
    """Restart the job's wall clock where it stopped, so a resume keeps the time budget."""
    job = session.get(Job, job_id)
    job.started_at = utcnow() - timedelta(seconds=job.run_seconds)
