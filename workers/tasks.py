"""The Celery tasks: start a job, work on one unit of it, finalise; and the sweep that
recovers work whose worker died or whose message a restarted broker lost.

A unit's message is a ticket to do one unit of its job, not a particular one: the task claims
the job's best pending unit by the frontier (an evaluation for an evaluation's ticket, an
expansion or a ride for the others) with a compare-and-set. Units run at once end in any order;
each keeps its outcome until its turn, and records are made in the frontier's order
(`storage.turns`), so the pool makes the in-process runner's tree. A job holds a ticket per
pending unit; a redelivered or duplicated ticket finds nothing to claim and costs one query. No
task waits on another; a job ends when its counter of outstanding units reaches zero, and the
task that sees that sends the finalisation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import ClassVar

import redis
import torch
from cachetools import LRUCache
from celery import signals
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError as DatabaseError

from ridgerider.search.frontier import search_frontier
from ridgerider.search.loop import grant_waiting, work_on
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import cancel_job, claim_finalisation, fail_job, get_job
from storage.queries import root_node
from storage.sweep import Message, lost_work
from storage.turns import has_computed
from storage.units import UnitKind, heartbeat, mark_enqueued
from workers import steps
from workers.celery_app import DEFAULT_QUEUE, GPU_QUEUE, app, settings
from workers.settings import job_channel

log = logging.getLogger(__name__)
CONTEXTS_PER_PROCESS = 8
TRANSIENT = (DatabaseError, BrokerError, ConnectionError)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": True, "max_retries": 5}


class _Process:
    """What one worker process keeps: its database engine, store and loaded problems. Reset
    after a fork, so that a child never uses its parent's connections."""

    db: ClassVar[Database | None] = None
    store: ClassVar[LocalArtifactStore | None] = None
    contexts: ClassVar[LRUCache[int, steps.JobContext]] = LRUCache(CONTEXTS_PER_PROCESS)
    publisher: ClassVar[redis.Redis | None] = None

    @classmethod
    def reset(cls) -> None:
        cls.db, cls.store, cls.publisher = None, None, None
        cls.contexts = LRUCache(CONTEXTS_PER_PROCESS)

    @classmethod
    def notify(cls, job_id: int) -> None:
        """Say on the broker that the job changed, for the event streams that watch it (a
        broker that is down is ignored: streams poll the database now and then anyway)."""
        if cls.publisher is None:
            url = settings().broker_url
            cls.publisher = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            cls.publisher.publish(job_channel(job_id), b"")
        except redis.RedisError:
            log.warning("could not tell event streams that job %s changed", job_id)

    @classmethod
    def resources(cls) -> tuple[Database, LocalArtifactStore]:
        if cls.db is None:
            cls.db = Database(settings().database_url)
            cls.store = LocalArtifactStore(settings().artifacts)
        return cls.db, cls.store

    @classmethod
    def context(cls, job_id: int) -> steps.JobContext:
        context = cls.contexts.get(job_id)
        if context is None:
            db, store = cls.resources()
            prefix = f"{os.getpid()}:"  # says which process holds a claimed unit
            context = steps.JobContext.load(db, store, job_id, token_prefix=prefix)
            cls.contexts[job_id] = context
        return context


@signals.worker_process_init.connect
def _child_started(**_: object) -> None:
    """A fresh pool process: its own connections and one torch thread (the pool's concurrency
    is the parallelism); CUDA is first touched in such a process, never before the fork."""
    _Process.reset()
    torch.set_num_threads(1)


@signals.worker_ready.connect
def _start_sweeping(**_: object) -> None:
    thread = threading.Thread(target=_sweep_forever, args=(settings().sweep_every,), daemon=True)
    thread.start()


def _sweep_forever(every: float) -> None:
    db = Database(settings().database_url)
    while True:
        time.sleep(every)
        try:
            sweep(db)
        except Exception:  # a sweep must never stop the worker; the next one tries again
            log.exception("sweep failed")


def queue_for(work: str) -> str:
    if settings().gpu_queue and work in ("expand", "ride"):
        return GPU_QUEUE
    return DEFAULT_QUEUE


def send(db: Database, message: Message) -> None:
    """Send the ticket issued for a pending unit and note when on the unit (a broker that is down
    is logged: the sweep resends)."""
    try:
        result = ticket.apply_async(
            args=[message.job_id, message.kind, message.unit_id, message.work],
            queue=queue_for(message.work),
        )
    except BrokerError:
        log.warning("broker unreachable; %s %s will be resent", message.kind, message.unit_id)
        return
    with db.session() as session:
        mark_enqueued(session, message.kind, message.unit_id, result.id)


def submit(db: Database, job_id: int) -> None:
    """Send a stored, queued job to the pool."""
    result = start.apply_async(args=[job_id])
    with db.session() as session:
        mark_enqueued(session, "job", job_id, result.id)


def _finalise_if_done(db: Database, job_id: int) -> None:
    with db.session() as session:
        won = claim_finalisation(session, job_id)
    if won:
        result = finalise.apply_async(args=[job_id])
        with db.session() as session:
            mark_enqueued(session, "job", job_id, result.id)


@contextlib.contextmanager
def _heartbeat(db: Database, kind: UnitKind, unit_id: int, token: str) -> Iterator[None]:
    """Beat for a claimed unit while it is worked on, so the sweep leaves it alone."""
    stop = threading.Event()
    every = settings().stale_after / 4

    def beat() -> None:
        while not stop.wait(every):
            with db.session() as session:
                if not heartbeat(session, kind, unit_id, token):
                    return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@app.task(name="ridgerider.start", **RETRY)
def start(job_id: int) -> str:
    """Classify the start and send the root's ticket (or finalise at once)."""
    db, _ = _Process.resources()
    with db.session(readonly=True) as session:
        if get_job(session, job_id).status != "queued":
            return "already started"
    try:
        ctx = _Process.context(job_id)
        _check_size(ctx.problem.dim)
        steps.start(ctx)
    except steps.StartError as error:  # the job is failed already
        return f"failed: {error}"
    except TRANSIENT:
        raise
    except Exception as error:
        return _fail(db, job_id, "its start failed", error)
    _Process.notify(job_id)
    with db.session(readonly=True) as session:
        root = root_node(session, job_id)
        if root is not None and root.state == "pending":
            send(db, Message(job_id, "node", root.id, root.work))
    _finalise_if_done(db, job_id)
    return "started"


@app.task(name="ridgerider.unit", **RETRY)
def ticket(job_id: int, kind: UnitKind, unit_id: int, work: str) -> str:
    """A ticket issued for unit (`kind`, `unit_id`) of a job: record the job's kept outcomes
    whose turn has come, claim its best pending unit by the frontier, do it, send a ticket per
    unit these created; finalise the job if it was the last. Where expansions and rides go to
    the GPU queue, a ticket claims within its class (evaluations, or expansions and rides), so
    that each runs where it was sent."""
    try:
        ctx = _Process.context(job_id)
    except TRANSIENT:
        raise
    except Exception as error:
        return _fail(_Process.resources()[0], job_id, "it could not be loaded", error)
    try:
        due = ctx.tree.record_computed()
    except TRANSIENT:
        raise
    except Exception as error:
        return _fail(ctx.db, job_id, "its kept outcomes could not be recorded", error)
    for new in due:
        send(ctx.db, Message(job_id, new.kind, new.id, new.work))
    works = ("expand", "evaluate", "ride")
    if settings().gpu_queue:
        works = ("evaluate",) if work == "evaluate" else ("expand", "ride")
    unit = ctx.tree.claim(search_frontier(ctx.spec, ctx.problem), works)
    if unit is None:
        _finalise_if_done(ctx.db, job_id)
        return "nothing to claim"  # done, in flight elsewhere, or the job is cancelled
    token = ctx.tree.tokens[unit.kind, unit.id]
    with _heartbeat(ctx.db, unit.kind, unit.id, token):
        created = work_on(ctx.tree, ctx.problem, ctx.spec, unit)
    _Process.notify(job_id)
    for new in created:
        send(ctx.db, Message(job_id, new.kind, new.id, new.work))
    _finalise_if_done(ctx.db, job_id)
    return f"did {unit.kind} {unit.id}"


@app.task(name="ridgerider.finalise", **RETRY)
def finalise(job_id: int) -> str:
    """Pairwise and set-level metrics; the job ends finished (or cancelled). First, the node
    budget's unused points go to the climbs left waiting (`grant_waiting`): where any are
    granted the job runs again, and the task that ends it last finalises it."""
    db, _ = _Process.resources()
    with db.session(readonly=True) as session:
        if get_job(session, job_id).status != "finalising":
            return "not finalising"
    try:
        ctx = _Process.context(job_id)
        granted = grant_waiting(ctx.tree, ctx.problem, ctx.spec)
        for unit in granted:
            send(db, Message(job_id, unit.kind, unit.id, unit.work))
        if granted:
            return f"granted {len(granted)} climbs"
        steps.finalise(ctx)
    except TRANSIENT:
        raise
    except Exception as error:
        return _fail(db, job_id, "its finalisation failed", error)
    _Process.notify(job_id)
    return "finalised"


def _check_size(parameters: int) -> None:
    """Refuse a problem over the pool's parameter limit (what an admin bounds memory by)."""
    limit = settings().max_parameters
    if parameters > limit:
        raise ValueError(
            f"the problem has {parameters:,} parameters, over this pool's limit "
            f"(RIDGERIDER_MAX_PARAMETERS = {limit:,})"
        )


def _fail(db: Database, job_id: int, what: str, error: Exception) -> str:
    """Fail the job with the error (shown by `status` and the API) instead of leaving it to be
    resent: an error that is not transient happens again on every try."""
    log.exception("job %s: %s", job_id, what)
    _Process.contexts.pop(job_id, None)
    with db.session() as session:
        fail_job(session, job_id, f"{what}: {type(error).__name__}: {error}")
    _Process.notify(job_id)
    return f"failed: {error}"


@app.task(name="ridgerider.probe")
def probe(key: str, sent_at: float) -> None:
    """Push to Redis list `key` how long this message took from send to start: the pool's
    per-task overhead, as `bench/workers.py` measures it."""
    client = redis.Redis.from_url(settings().broker_url)
    try:
        client.rpush(key, time.time() - sent_at)
    finally:
        client.close()


def cancel(db: Database, job_id: int) -> None:
    """Cancel a job: no unit is claimed after this; its queued messages are revoked (when the
    broker answers: their claims would fail anyway); outcomes kept for their turn are
    recorded."""
    with db.session() as session:
        task_ids = cancel_job(session, job_id)
        unrecorded = has_computed(session, job_id)
    _Process.notify(job_id)
    try:
        if task_ids:
            app.control.revoke(task_ids)
        if unrecorded:  # a ticket records them (`storage.turns`: at once, in a cancelled job)
            ticket.apply_async(args=[job_id, "node", 0, "evaluate"])
        _finalise_if_done(db, job_id)
    except BrokerError:  # the flag already stops every claim; the sweep sends finalisation
        log.warning("broker unreachable while cancelling job %s", job_id)


def _broker_idle() -> bool:
    """Whether no message waits in any of our queues (so a pending unit's message is lost)."""
    client = redis.Redis.from_url(settings().broker_url)
    try:
        return all(client.llen(queue) == 0 for queue in (DEFAULT_QUEUE, GPU_QUEUE))
    finally:
        client.close()


def sweep(db: Database) -> int:
    """Give back units whose worker died; resend units, starts and finalisations whose message
    was lost. Returns how many messages were sent."""
    with db.session() as session:
        lost = lost_work(
            session,
            timedelta(seconds=settings().stale_after),
            timedelta(seconds=settings().requeue_after),
        )
    if not (lost.units or lost.jobs_to_start or lost.jobs_to_finalise) or not _broker_idle():
        return 0
    for message in lost.units:
        send(db, message)
    for job_id in lost.jobs_to_start:
        submit(db, job_id)
    for job_id in lost.jobs_to_finalise:
        result = finalise.apply_async(args=[job_id])
        with db.session() as session:
            mark_enqueued(session, "job", job_id, result.id)
    sent = len(lost.units) + len(lost.jobs_to_start) + len(lost.jobs_to_finalise)
    log.info("sweep resent %d messages", sent)
    return sent
