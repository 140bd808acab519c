"""The in-process runner: the engine's one loop over the job's tree in the database.

It works off the database alone, so a run that was killed is resumed by running the job again:
units it had claimed go back to pending and nothing recorded is redone.
"""

from __future__ import annotations

from collections.abc import Callable

from ridgerider.search.loop import run
from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import claim_finalisation, get_job, resume_clock
from storage.models import Job
from storage.progress import counts
from storage.sweep import reclaim
from workers import steps

Progress = Callable[[dict[str, int]], None]


def run_job(
    db: Database,
    store: ArtifactStore,
    job_id: int,
    *,
    on_progress: Progress | None = None,
) -> Job:
    """Run (or resume) job `job_id` in this process until it ends; returns the job.

    Raises:
        StartError: the job cannot start (it is marked failed).
        JobNotFoundError: there is no such job.
    """
    ctx = steps.JobContext.load(db, store, job_id)
    with db.session() as session:
        status = get_job(session, job_id).status
        if status == "running":
            reclaim(session, job_id)
            resume_clock(session, job_id)
    if status == "queued":
        steps.start(ctx)
    ctx.tree.record_computed()

    def progressed(_: object) -> None:
        if on_progress is not None:
            with db.session(readonly=True) as session:
                on_progress(counts(session, job_id))

    run(ctx.tree, ctx.problem, ctx.spec, progressed)
    with db.session() as session:
        finalise = claim_finalisation(session, job_id)
        finalise = finalise or get_job(session, job_id).status == "finalising"
    if finalise:
        steps.finalise(ctx)
    with db.session(readonly=True) as session:
        return get_job(session, job_id)
