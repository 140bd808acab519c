"""`/jobs`: submit, list, read and cancel jobs; the job's events are in `events`, its results
(tree, solutions, selection, export) in `results`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import OwnerDep, Services, ServicesDep
from api.limits import SUBMISSION_WINDOW_SECONDS, check_submission
from api.problems_json import ProblemError
from api.schemas import (
    ERRORS_503,
    MAX_ID,
    JobId,
    JobOut,
    JobPage,
    JobSubmission,
    Progress,
)
from storage.jobs import (
    IdempotencyKeyReusedError,
    JobNotFoundError,
    create_job,
    get_job,
    job_version,
    submission_load,
)
from storage.models import JOB_ENDED, Job, JobStatus
from storage.progress import counts
from storage.queries import (
    MAX_PAGE,
    list_jobs,
)
from storage.report import job_summary
from workers.settings import Settings

router = APIRouter(tags=["jobs"])
# OpenAPI links from a submitted job to what can be done with it (clients and stateful fuzzing
# follow them).
JOB_LINKS = {
    name: {
        "operationRef": f"#/paths/{path}/{method}",
        "parameters": {"job_id": "$response.body#/id"},
    }
    for name, path, method in (
        ("GetJob", "~1jobs~1{job_id}", "get"),
        ("CancelJob", "~1jobs~1{job_id}~1cancel", "post"),
        ("Solutions", "~1jobs~1{job_id}~1solutions", "get"),
        ("Select", "~1jobs~1{job_id}~1select", "post"),
        ("Graph", "~1jobs~1{job_id}~1graph", "get"),
    )
}
RETRY_AFTER_SECONDS = "2"


def job_out(services: Services, session: Session, job: Job) -> JobOut:
    """The job and its progress; the counts are computed once per version of the job."""
    key = (job.id, job.merge_lock)
    progress = services.progress.get(key)
    if progress is None:
        progress = counts(session, job.id)
        services.progress.put(key, progress)
    return JobOut(
        **{k: v for k, v in job_summary(job).items() if k != "owner"},
        spec=job.spec,
        progress=Progress(**{k: progress[k] for k in Progress.model_fields}),
        stats=job.stats or {},
    )


def check_owner(session: Session, owner: str, job_id: int) -> int:
    """The job's version (its record counter); another owner's job answers 404, as a missing
    one does."""
    version = job_version(session, job_id, owner)
    if version is None:
        raise ProblemError(404, "Not Found", f"no job {job_id}")
    return version


def own_job(session: Session, owner: str, job_id: int) -> Job:
    """The caller's job; another owner's job answers 404, as a missing one does."""
    try:
        return get_job(session, job_id, owner)
    except JobNotFoundError:
        raise ProblemError(404, "Not Found", f"no job {job_id}") from None


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses={202: {"links": JOB_LINKS}, 503: ERRORS_503},
)
def submit(
    spec: JobSubmission,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    """Queue a search on the worker pool. A retried request with the same `Idempotency-Key`
    returns the job the first one made; the key sent with another spec is a 422."""
    fields = spec.model_dump()
    try:
        job_id, new = _create(services, fields, owner, idempotency_key)
    except IntegrityError:  # two retries raced: the other one made it, and sends it
        job_id, new = _create(services, fields, owner, idempotency_key)[0], False
    if new:
        try:
            services.pool.submit(services.db, job_id)
        except BrokerError:
            detail = (
                f"job {job_id} is stored but the broker is unreachable: retry with the same "
                "Idempotency-Key to send it"
            )
            raise ProblemError(503, "Service Unavailable", detail) from None
    response.headers["Location"] = f"/jobs/{job_id}"
    with services.db.session(readonly=True) as session:
        return job_out(services, session, get_job(session, job_id))


def _create(
    services: Services, fields: dict[str, Any], owner: str, idempotency_key: str | None
) -> tuple[int, bool]:
    """The job's id, and whether it is new (not one an earlier request with the key made)."""
    try:
        with services.db.session() as session:
            if idempotency_key is None or not _key_used(session, owner, idempotency_key):
                _check_quota(session, services.settings, owner)
            job = create_job(
                session, fields, owner=owner, idempotency_key=idempotency_key, allow_import=False
            )
            return job.id, job.enqueued_at is None
    except IdempotencyKeyReusedError as error:
        field = {"field": "Idempotency-Key", "message": str(error)}
        raise ProblemError(422, "Idempotency-Key reused", str(error), [field]) from None


def _key_used(session: Session, owner: str, idempotency_key: str) -> bool:
    found = sql_select(Job.id).where(Job.owner == owner, Job.idempotency_key == idempotency_key)
    return session.scalar(found) is not None


def _check_quota(session: Session, settings: Settings, owner: str) -> None:
    """Refuse a new job past the key's jobs in flight or submissions a minute (429)."""
    window = timedelta(seconds=SUBMISSION_WINDOW_SECONDS)
    check_submission(settings, *submission_load(session, owner, window))


@router.get("/jobs", response_model=JobPage)
def jobs(
    services: ServicesDep,
    owner: OwnerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="the last id of the previous page")
    ] = None,
) -> JobPage:
    """The caller's jobs, newest first."""
    with services.db.session(readonly=True) as session:
        listed = list_jobs(session, owner=owner, status=status, limit=limit + 1, after=cursor)
        page = [job_out(services, session, job) for job in listed[:limit]]
    return JobPage(jobs=page, next_cursor=listed[limit - 1].id if len(listed) > limit else None)


@router.get("/jobs/{job_id}", response_model=JobOut)
def job(job_id: JobId, response: Response, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """Status and progress (`Retry-After` while the job runs)."""
    with services.db.session(readonly=True) as session:
        found = own_job(session, owner, job_id)
        if found.status not in JOB_ENDED:
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return job_out(services, session, found)


@router.post("/jobs/{job_id}/cancel", status_code=202, response_model=JobOut)
def cancel(job_id: JobId, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """Stop the job: nothing more starts; what it found is kept."""
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)
    services.pool.cancel(services.db, job_id)
    with services.db.session(readonly=True) as session:
        return job_out(services, session, own_job(session, owner, job_id))
