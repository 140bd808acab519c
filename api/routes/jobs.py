"""`/jobs`: submit, list, watch (status and server-sent events), cancel, the tree, solutions,
selection and export."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import networkx as nx
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from kombu.exceptions import OperationalError as BrokerError
from pydantic import TypeAdapter
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from api.background import build_export
from api.caches import etag
from api.deps import OwnerDep, Services, ServicesDep
from api.limits import SUBMISSION_WINDOW_SECONDS, Limits, check_submission
from api.notifications import job_changes
from api.problems_json import ProblemError
from api.schemas import (
    ERRORS_503,
    MAX_ID,
    MAX_PAGE,
    OBJECTIVES_PATTERN,
    SORT_PATTERN,
    JobId,
    JobOut,
    JobPage,
    JobSubmission,
    Progress,
    Selection,
    SelectRequest,
    SolutionOut,
    SolutionPage,
)
from ridgerider import __version__
from storage.filters import FilterError
from storage.jobs import (
    IdempotencyKeyReusedError,
    JobNotFoundError,
    counts,
    create_job,
    get_job,
    job_state,
    job_version,
    submission_load,
)
from storage.models import Job, Node, Ride, Solution
from storage.queries import (
    MAX_CURSOR,
    ForgedCursorError,
    QueryError,
    lineage_graph,
    list_jobs,
    solution_metrics,
    solution_rows,
    solutions_page,
)
from storage.report import job_summary
from storage.selection import choose

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
ENDED = ("finished", "failed", "cancelled")
KEEPALIVE_SECONDS = 15.0
RETRY_AFTER_SECONDS = "2"
GRAPHML = "application/graphml+xml"
ANY_JSON = TypeAdapter(Any)


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
                _check_quota(session, services.limits, owner)
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


def _check_quota(session: Session, limits: Limits, owner: str) -> None:
    """Refuse a new job past the key's jobs in flight or submissions a minute (429)."""
    window = timedelta(seconds=SUBMISSION_WINDOW_SECONDS)
    check_submission(limits, *submission_load(session, owner, window))


@router.get("/jobs", response_model=JobPage)
def jobs(
    services: ServicesDep,
    owner: OwnerDep,
    status: Annotated[
        str | None, Query(pattern="^(queued|running|finalising|finished|failed|cancelled)$")
    ] = None,
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
        if found.status not in ENDED:
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


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    job_id: JobId, request: Request, services: ServicesDep, owner: OwnerDep
) -> StreamingResponse:
    """Server-sent events: `node` (a critical point found), `ride` (a ride ended), `minimum`
    (a solution stored, with its metrics), `progress`, and `finished` (then the stream ends).
    A comment comes every 15 s while nothing happens; after the server's longest stream time
    an `expired` event ends it (connect again: events start over). A key holds a bounded
    number of streams at once (429 beyond)."""
    await asyncio.to_thread(_check_owner_in_session, services, owner, job_id)
    services.streams.take(owner)
    return StreamingResponse(
        _event_stream(services, job_id, owner, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def _check_owner_in_session(services: Services, owner: str, job_id: int) -> None:
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)


def _job_state(services: Services, job_id: int) -> tuple[int, str] | None:
    with services.db.session(readonly=True) as session:
        return job_state(session, job_id)


async def _event_stream(
    services: Services, job_id: JobId, owner: str, request: Request
) -> AsyncIterator[str]:
    """The events of the job as it changes: the database is read when a worker says the job
    changed (or now and then), and only in full when its version moved."""
    seen = {"node": 0, "ride": 0, "minimum": 0}
    started = last_sent = time.monotonic()
    version = None
    try:
        async with job_changes(services.broker_url, job_id) as changed:
            while not await request.is_disconnected():
                now = time.monotonic()
                current = await asyncio.to_thread(_job_state, services, job_id)
                if current != version:
                    version = current
                    batch, job = await asyncio.to_thread(_new_events, services, job_id, seen)
                    for kind, data in batch:
                        yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                    last_sent = now
                    if job["status"] in ENDED:
                        yield f"event: finished\ndata: {json.dumps(job)}\n\n"
                        return
                elif now - last_sent >= KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    last_sent = now
                if now - started >= services.limits.stream_seconds:
                    after = {"seconds": services.limits.stream_seconds}
                    yield f"event: expired\ndata: {json.dumps(after)}\n\n"
                    return
                await changed(KEEPALIVE_SECONDS)
    finally:
        services.streams.give_back(owner)


def _new_events(
    services: Services, job_id: JobId, seen: dict[str, int]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Events since the ids in `seen` (which it advances), and the job's summary."""
    out: list[tuple[str, dict[str, Any]]] = []
    with services.db.session(readonly=True) as session:
        job = get_job(session, job_id)
        nodes = session.scalars(
            sql_select(Node).where(Node.job_id == job_id, Node.id > seen["node"]).order_by(Node.id)
        ).all()
        rides = session.scalars(
            sql_select(Ride).where(Ride.job_id == job_id, Ride.id > seen["ride"]).order_by(Ride.id)
        ).all()
        solutions = session.scalars(
            sql_select(Solution)
            .where(Solution.job_id == job_id, Solution.id > seen["minimum"])
            .order_by(Solution.id)
        ).all()
        metrics = solution_metrics(session, [s.id for s in solutions])
        progress = counts(session, job_id)
        summary = job_summary(job)
    for node in nodes:
        out.append(
            (
                "node",
                {
                    "id": node.id,
                    "kind": node.kind,
                    "index": node.index,
                    "loss": node.loss,
                    "depth": node.depth,
                    "fingerprint": node.path,
                },
            )
        )
        seen["node"] = node.id
    for ride in rides:  # in id order, up to the first still under way (reported later)
        if ride.state in ("pending", "claimed"):
            break
        out.append(
            (
                "ride",
                {
                    "id": ride.id,
                    "from": ride.from_node_id,
                    "to": ride.to_node_id,
                    "state": ride.state,
                    "end_reason": ride.end_reason,
                    "failure": ride.failure,
                },
            )
        )
        seen["ride"] = ride.id
    for solution in solutions:
        out.append(
            (
                "minimum",
                {"id": solution.id, "node_id": solution.node_id, "metrics": metrics[solution.id]},
            )
        )
        seen["minimum"] = solution.id
    out.append(("progress", progress))
    return out, summary


@router.get(
    "/jobs/{job_id}/graph",
    responses={200: {"content": {"application/json": {}, GRAPHML: {}}}},
)
def graph(job_id: JobId, request: Request, services: ServicesDep, owner: OwnerDep) -> Response:
    """The DAG of critical points and rides: networkx node-link JSON, or GraphML with
    `Accept: application/graphml+xml`."""
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)
        dag = lineage_graph(session, job_id)
    if GRAPHML in request.headers.get("accept", ""):
        return Response("\n".join(nx.generate_graphml(dag)), media_type=GRAPHML)
    return Response(
        json.dumps(nx.node_link_data(dag, edges="edges")), media_type="application/json"
    )


@router.get(
    "/jobs/{job_id}/solutions",
    response_model=SolutionPage,
    responses={304: {"description": "not modified since the ETag in If-None-Match"}},
)
def solutions(
    job_id: JobId,
    services: ServicesDep,
    owner: OwnerDep,
    filter: Annotated[str | None, Query(max_length=2000)] = None,
    sort: Annotated[str, Query(pattern=SORT_PATTERN, description="-name descends")] = "id",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """The job's solutions passing `filter`, sorted by `sort` (`-name` descends), a page at a
    time (`cursor` from the previous page's `next_cursor`). The ETag changes when the job
    records anything; a page unchanged since is served from memory, or 304 to `If-None-Match`."""
    with services.db.session(readonly=True) as session:
        version = check_owner(session, owner, job_id)
        key = (__version__, job_id, version, filter, sort, limit, cursor)
        tag = etag(key)
        if if_none_match == tag:
            return Response(status_code=304, headers={"ETag": tag})
        body = services.pages.get(key)
        if body is None:
            body = _solutions_body(session, job_id, filter, sort, limit, cursor)
            services.pages.put(key, body)
    return Response(body, media_type="application/json", headers={"ETag": tag})


def _solutions_body(
    session: Session, job_id: int, filter: str | None, sort: str, limit: int, cursor: str | None
) -> bytes:
    try:
        page = solutions_page(session, job_id, filter=filter, sort=sort, limit=limit, cursor=cursor)
    except FilterError as error:
        raise ProblemError(
            422,
            "Invalid filter",
            str(error),
            [{"field": "filter", "message": error.message, "position": error.position}],
        ) from None
    except QueryError as error:
        field = str(error).split(":")[0] if ":" in str(error) else "query"
        status = 400 if isinstance(error, ForgedCursorError) else 422
        raise ProblemError(
            status, "Invalid query", str(error), [{"field": field, "message": str(error)}]
        ) from None
    # Plain data serialised once, with no validation pass (the route still declares
    # SolutionPage, and the schema fuzz test holds it to it); non-finite floats become null.
    return ANY_JSON.dump_json(
        {"solutions": [row.to_json() for row in page.items], "next_cursor": page.next_cursor}
    )


@router.post("/jobs/{job_id}/select", response_model=Selection)
def select(
    job_id: JobId, request: SelectRequest, services: ServicesDep, owner: OwnerDep
) -> Selection:
    """The Pareto front of `pareto` objectives, or the `diverse` most mutually disagreeing
    solutions (greedy max-min), among those passing `filter`."""
    if (request.pareto is None) == (request.diverse is None):
        raise ProblemError(
            422,
            "Invalid selection",
            "give exactly one of pareto and diverse",
            [{"field": "pareto", "message": "exactly one of pareto, diverse"}],
        )
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)
        pareto = request.pareto and ",".join(f"{o.name}:{o.direction}" for o in request.pareto)
        try:
            ids, how = choose(session, job_id, pareto, request.diverse, request.filter)
        except (FilterError, QueryError) as error:
            raise ProblemError(422, "Invalid selection", str(error)) from None
        chosen = [SolutionOut(**row.to_json()) for row in solution_rows(session, ids)]
    return Selection(selection=how, solutions=chosen)


def _export_choice(
    services: Services,
    owner: str,
    job_id: int,
    pareto: str | None,
    diverse: int | None,
    filter: str | None,
) -> tuple[list[int], str]:
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)
        try:
            return choose(session, job_id, pareto, diverse, filter)
        except (FilterError, QueryError) as error:
            raise ProblemError(422, "Invalid selection", str(error)) from None


class ExportResponse(FileResponse):
    """An export archive whose temporary folder is removed once the response is over: sent,
    failed, or cut off by the client (a background task would not run then)."""

    def __init__(self, path: Path, folder: Path) -> None:
        super().__init__(path, media_type="application/gzip", filename=path.name)
        self.folder = folder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@router.get(
    "/jobs/{job_id}/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def export_archive(
    job_id: JobId,
    services: ServicesDep,
    owner: OwnerDep,
    pareto: Annotated[
        str | None, Query(max_length=1000, pattern=OBJECTIVES_PATTERN, description="a:max,b:min")
    ] = None,
    diverse: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
    filter: Annotated[str | None, Query(max_length=2000)] = None,
) -> FileResponse:
    """The job's solutions (all, or a Pareto front, or a diverse top-k, among those passing
    `filter`) as an archive: model card, metrics CSV, lineage GraphML and JSON, weights with
    their hashes, plots. Built in the server's export process, one at a time (429 when too
    many wait)."""
    ids, how = await asyncio.to_thread(
        _export_choice, services, owner, job_id, pareto, diverse, filter
    )
    folder = Path(tempfile.mkdtemp(prefix="ridgerider-export-"))
    try:
        built = await services.exports.run(
            build_export,
            services.db.url.render_as_string(hide_password=False),
            str(services.store.root),
            job_id,
            str(folder / f"ridgerider-job-{job_id}.tar.gz"),
            ids,
            how,
        )
    except BaseException:  # no response will remove it
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ExportResponse(Path(built), folder)
