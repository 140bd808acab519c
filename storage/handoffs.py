"""Hand-offs to MLflow asked for over HTTP: recorded when asked, then moved along by the
process that does them, so that every server process (and the caller) can read their state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Handoff, HandoffState, Job, utcnow

MAX_ERROR = 2000


def create_handoff(session: Session, job_id: int, request: dict[str, Any]) -> Handoff:
    """A queued hand-off of job `job_id` (its owner checked by the caller)."""
    handoff = Handoff(job_id=job_id, request=request, state=HandoffState.QUEUED)
    session.add(handoff)
    session.flush()
    return handoff


def get_handoff(session: Session, job_id: int, handoff_id: int, owner: str) -> Handoff | None:
    """The hand-off, if it belongs to job `job_id` of `owner`."""
    return session.scalar(
        select(Handoff)
        .join(Job, Job.id == Handoff.job_id)
        .where(Handoff.id == handoff_id, Handoff.job_id == job_id, Job.owner == owner)
    )


def start_handoff(session: Session, handoff_id: int) -> tuple[Handoff, Job]:
    """Mark the hand-off running; it and its job."""
    handoff = session.get(Handoff, handoff_id)
    handoff.state = HandoffState.RUNNING
    return handoff, session.get(Job, handoff.job_id)


def finish_handoff(
    session: Session,
    handoff_id: int,
    *,
    result: dict[str, Any] | None = None,
    error: BaseException | None = None,
) -> None:
    """Mark the hand-off finished with its `result`, or failed with `error` (its type and
    message kept)."""
    handoff = session.get(Handoff, handoff_id)
    handoff.state = HandoffState.FAILED if error is not None else HandoffState.FINISHED
    handoff.error = f"{type(error).__name__}: {error}"[:MAX_ERROR] if error is not None else None
    handoff.result = result
    handoff.finished_at = utcnow()
