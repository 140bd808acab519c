"""A job's progress: what it has found and spent, for status reports and its budgets."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ridgerider.search.budget import Progress
from storage.jobs import elapsed_seconds
from storage.models import Job, Node, Ride, Solution


def counts(session: Session, job_id: int) -> dict[str, int]:
    """Progress: nodes by kind, rides done, failed and skipped, expansions skipped (budgets),
    points whose evaluation or expansion failed, solutions, HVPs, and units outstanding."""
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
    states = dict(
        session.execute(
            select(Node.state, func.count()).where(Node.job_id == job_id).group_by(Node.state)
        ).all()
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
        "skipped_expansions": states.get("skipped", 0),
        "failed_points": states.get("failed", 0),
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
