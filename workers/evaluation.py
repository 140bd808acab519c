"""Model evaluations over stored solutions, done by the command line or a worker (never in a
request): the ensemble metrics of a chosen set."""

from __future__ import annotations

from collections.abc import Sequence

from ridgerider.metrics import pairwise_metrics, set_metrics
from ridgerider.problems.base import Problem
from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.solutions import load_theta


def ensemble_metrics(
    db: Database, store: ArtifactStore, job_id: int, ids: Sequence[int], problem: Problem
) -> dict[str, float]:
    """Set-level metrics of the job's solutions `ids`: ensemble and best test accuracy, mean
    disagreement, how many are functionally distinct.

    Raises:
        SolutionNotFoundError: an id is no solution of the job.
    """
    thetas = [
        problem.place(load_theta(db, store, solution_id, job_id=job_id)) for solution_id in ids
    ]
    return set_metrics(problem, thetas, pairwise_metrics(problem, thetas))
