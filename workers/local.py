"""The in-process runner: claim the next unit by the frontier policy, do it, record it, repeat.

It works off the database alone, so a run that was killed is resumed by running the job again:
units it had claimed go back to pending and nothing recorded is redone.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import (
    Unit,
    claim,
    claim_finalisation,
    counts,
    get_job,
    new_token,
    pending_units,
    reclaim,
    resume_clock,
)
from storage.models import Job
from workers import steps

Progress = Callable[[dict[str, int]], None]


def frontier_key(policy: str) -> Callable[[Unit], tuple]:
    """How units are ordered: evaluations first (they only measure), then by the frontier:
    shallowest, deepest, or most negative eigenvalue first; a node's expansion before its
    rides, rides in the order they were queued."""

    def key(unit: Unit) -> tuple:
        evaluate = unit.work != "evaluate"
        kind = unit.kind == "ride"
        if policy == "depth-first":
            return (evaluate, -unit.depth, -unit.node_id, kind, unit.id)
        if policy == "most-negative-first":
            return (evaluate, unit.eigenvalue, unit.node_id, kind, unit.id)
        return (evaluate, unit.depth, unit.node_id, kind, unit.id)

    return key


def run_job(
    db: Database,
    store: ArtifactStore,
    job_id: int,
    *,
    on_progress: Progress | None = None,
    allow_import: bool = True,
) -> Job:
    """Run (or resume) job `job_id` in this process until it ends; returns the job.

    Raises:
        steps.StartError: the job cannot start (it is marked failed).
        JobNotFoundError: there is no such job.
    """
    ctx = steps.JobContext.load(db, store, job_id, allow_import=allow_import)
    with db.session() as session:
        status = get_job(session, job_id).status
        if status == "running":
            reclaim(session, job_id)
            resume_clock(session, job_id)
    if status == "queued":
        steps.start(ctx)
    key = frontier_key(ctx.spec.frontier)
    while units := _pending(db, job_id):
        unit = min(units, key=key)
        token = new_token()
        with db.session() as session:
            if not claim(session, unit.kind, unit.id, token):
                continue
        steps.do_unit(ctx, unit.kind, unit.id, unit.work, token)
        if on_progress is not None:
            with db.session(readonly=True) as session:
                on_progress(counts(session, job_id))
    with db.session() as session:
        finalise = claim_finalisation(session, job_id)
        finalise = finalise or get_job(session, job_id).status == "finalising"
    if finalise:
        steps.finalise(ctx)
    with db.session(readonly=True) as session:
        return get_job(session, job_id)


def _pending(db: Database, job_id: int) -> list[Unit]:
    with db.session(readonly=True) as session:
        return pending_units(session, job_id)
