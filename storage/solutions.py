"""Stored solutions back as models: the flat parameters or a ready `nn.Module`, in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.artifacts import ArtifactStore, get_tensors
from storage.database import Database
from storage.models import Job, Solution

if TYPE_CHECKING:
    from torch import Tensor, nn


class SolutionNotFoundError(LookupError):
    """No solution has that id (or the caller may not see it)."""


def _solution(
    db: Database, solution_id: int, owner: str | None, job_id: int | None = None
) -> tuple[Solution, Job]:
    with db.session(readonly=True) as session:
        solution = session.get(Solution, solution_id)
        job = session.get(Job, solution.job_id) if solution else None
    if solution is None or (owner is not None and job.owner != owner):
        raise SolutionNotFoundError(f"no solution {solution_id}")
    if job_id is not None and job.id != job_id:
        raise SolutionNotFoundError(f"solution {solution_id} is not in job {job_id}")
    return solution, job


def load_theta(
    db: Database,
    store: ArtifactStore,
    solution_id: int,
    *,
    owner: str | None = None,
    job_id: int | None = None,
) -> Tensor:
    """The solution's flat parameter vector (its artifact's hash verified); with `job_id`, only
    a solution of that job."""
    solution, _ = _solution(db, solution_id, owner, job_id)
    return get_tensors(store, solution.weights_sha256)["theta"]


def load_model(
    db: Database,
    store: ArtifactStore,
    solution_id: int,
    *,
    owner: str | None = None,
    allow_import: bool = True,
) -> nn.Module:
    """The solution as a ready `nn.Module` (eval mode) with its weights.

    Raises:
        SolutionNotFoundError: no such solution.
        TypeError: the job's problem is a plain function, not a module (use `load_theta`).
    """
    from ridgerider.problems.registry import load  # the engine: only where a model is built

    solution, job = _solution(db, solution_id, owner)
    problem = load(job.problem, allow_import=allow_import)
    if problem.to_module is None:
        raise TypeError(f"problem {problem.name!r} is a function of a flat vector; use load_theta")
    theta = get_tensors(store, solution.weights_sha256)["theta"]
    return problem.to_module(theta)
