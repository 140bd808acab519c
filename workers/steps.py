"""A job's context for the runners, and the two steps around its tree: start and finalise.

The in-process runner (`workers.local`) and the Celery tasks (`workers.tasks`) run the engine's
one loop (`ridgerider.search.loop`) over the job's tree in the database (`storage.tree`); this
module builds what both need and ends the job with its set-level metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ridgerider.metrics import pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search.loop import UNIT_ERRORS, begin
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import StartError
from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import fail_job, get_job, record_finalisation
from storage.models import Job, Node, Solution
from storage.progress import counts
from storage.tree import JobTree


@dataclass
class JobContext:
    """What working on one job needs: the database, the artifacts, the spec, the problem (built
    once per process) and the job's tree."""

    db: Database
    store: ArtifactStore
    job_id: int
    spec: SearchSpec
    problem: Problem
    tree: JobTree

    @classmethod
    def load(
        cls,
        db: Database,
        store: ArtifactStore,
        job_id: int,
        *,
        token_prefix: str = "",
    ) -> JobContext:
        """The job's context; its problem is imported from a module only where the job allows
        it (jobs submitted from the CLI, never those from the network)."""
        with db.session(readonly=True) as session:
            job = get_job(session, job_id)
            spec, allow_import = SearchSpec(**job.spec), job.allow_import
        problem = load(spec.problem, allow_import=allow_import)
        spec = spec.resolved(problem)
        tree = JobTree(db, store, job_id, problem, spec, token_prefix)
        return cls(db, store, job_id, spec, problem, tree)


def start(ctx: JobContext) -> None:
    """Classify the problem's start and make it the job's root node.

    Raises:
        StartError: the problem has no start, its loss there is no finite scalar, or the start
            is not a critical point (the job is failed).
        ArithmeticError, RuntimeError, TypeError: the loss raised it at the start (the job is
            failed with it, not left queued; the database's and the broker's errors are not
            caught: the start is retried).
    """
    try:
        begin(ctx.tree, ctx.problem, ctx.spec)
    except (*UNIT_ERRORS, TypeError) as error:
        reason = str(error) if isinstance(error, StartError) else f"{type(error).__name__}: {error}"
        with ctx.db.session() as session:
            fail_job(session, ctx.job_id, reason)
        raise


def finalise(ctx: JobContext) -> None:
    """Pairwise and set-level metrics of the job's solutions, and its statistics; the job ends
    `finished` (or `cancelled`)."""
    with ctx.db.session(readonly=True) as session:
        job = session.get(Job, ctx.job_id)
        solutions = session.execute(
            select(Solution.id, Node.id)
            .join(Node, Node.id == Solution.node_id)
            .where(Solution.job_id == ctx.job_id)
            .order_by(Solution.id)
        ).all()
        progress = counts(session, ctx.job_id)
    ids = [solution_id for solution_id, _ in solutions]
    thetas = [ctx.tree.point(node_id).theta for _, node_id in solutions]
    pairs = pairwise_metrics(ctx.problem, thetas)
    stats = {
        **progress,
        "set_metrics": set_metrics(ctx.problem, thetas, pairs),
        "stopped": job.stopped or "frontier exhausted",
        "seconds": job.run_seconds,
    }
    by_id = {(ids[i], ids[j]): values for (i, j), values in pairs.items()}
    with ctx.db.session() as session:
        record_finalisation(session, ctx.job_id, by_id, stats)
