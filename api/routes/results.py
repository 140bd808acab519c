"""A job's results: the tree (`/graph`), its solutions a page at a time, a selection, and the
export archive."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import networkx as nx
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import TypeAdapter
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from api.background import build_export, ensemble_of
from api.caches import etag
from api.deps import OwnerDep, Services, ServicesDep
from api.problems_json import ProblemError
from api.routes.jobs import check_owner
from api.schemas import (
    OBJECTIVES_PATTERN,
    SORT_PATTERN,
    Ensemble,
    EnsembleRequest,
    JobId,
    Selection,
    SelectRequest,
    SolutionPage,
)
from ridgerider import __version__
from storage.export import disagreement_matrix
from storage.filters import FilterError
from storage.queries import (
    MAX_CURSOR,
    MAX_PAGE,
    ForgedCursorError,
    QueryError,
    lineage_graph,
    solution_rows,
    solutions_page,
)
from storage.selection import Choice, choose, stored_predictions

router = APIRouter(tags=["jobs"])
GRAPHML = "application/graphml+xml"
ANY_JSON = TypeAdapter(Any)


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
    where: Annotated[str | None, Query(alias="filter", max_length=2000)] = None,
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
        key = (__version__, job_id, version, where, sort, limit, cursor)
        tag = etag(key)
        if if_none_match == tag:
            return Response(status_code=304, headers={"ETag": tag})
        body = services.pages.get(key)
        if body is None:
            body = _solutions_body(session, job_id, where, sort, limit, cursor)
            services.pages.put(key, body)
    return Response(body, media_type="application/json", headers={"ETag": tag})


def _solutions_body(
    session: Session, job_id: int, where: str | None, sort: str, limit: int, cursor: str | None
) -> bytes:
    try:
        page = solutions_page(session, job_id, where=where, sort=sort, limit=limit, cursor=cursor)
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
        ids, how = choose_or_422(session, owner, job_id, request.choice())
        chosen = solution_rows(session, ids)
    return Selection(selection=how, solutions=chosen)


def choose_or_422(
    session: Session, owner: str, job_id: int, choice: Choice
) -> tuple[list[int], str]:
    """The caller's job's solutions a selection picks, and how (`storage.selection.choose`);
    another owner's job is a 404, a bad selection a 422."""
    check_owner(session, owner, job_id)
    try:
        return choose(session, job_id, choice)
    except (FilterError, QueryError) as error:
        raise ProblemError(422, "Invalid selection", str(error)) from None


def _export_choice(
    services: Services, owner: str, job_id: int, choice: Choice
) -> tuple[list[int], str]:
    with services.db.session(readonly=True) as session:
        return choose_or_422(session, owner, job_id, choice)


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
    where: Annotated[str | None, Query(alias="filter", max_length=2000)] = None,
) -> FileResponse:
    """The job's solutions (all, or a Pareto front, or a diverse top-k, among those passing
    `filter`) as an archive: model card, metrics CSV, lineage GraphML and JSON, weights with
    their hashes, plots. Built in the server's export process, one at a time (429 when too
    many wait)."""
    ids, how = await asyncio.to_thread(
        _export_choice, services, owner, job_id, Choice(pareto, diverse, where)
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


@router.post("/jobs/{job_id}/ensemble", response_model=Ensemble)
async def ensemble(
    job_id: JobId, request: EnsembleRequest, services: ServicesDep, owner: OwnerDep
) -> Ensemble:
    """The chosen solutions' ensemble metrics (ensemble and best test accuracy, mean
    disagreement, how many are functionally distinct) and their pairwise disagreement. The
    models are evaluated in the server's export process, one request at a time (429 when too
    many wait)."""
    ids = list(dict.fromkeys(request.ids))
    disagreement = await asyncio.to_thread(_disagreement, services, owner, job_id, ids)
    metrics = await services.exports.run(
        ensemble_of,
        services.db.url.render_as_string(hide_password=False),
        str(services.store.root),
        job_id,
        ids,
    )
    return Ensemble(set_metrics=metrics, disagreement=disagreement)


def _disagreement(services: Services, owner: str, job_id: int, ids: list[int]) -> list[list[float]]:
    with services.db.session(readonly=True) as session:
        check_owner(session, owner, job_id)
        found = {row.id for row in solution_rows(session, ids) if row.job_id == job_id}
        if missing := [i for i in ids if i not in found]:
            raise ProblemError(
                422,
                "Invalid selection",
                f"no solution {missing[0]} in job {job_id}",
                [{"field": "ids", "message": f"{missing[0]} is no solution of this job"}],
            )
        try:
            return disagreement_matrix(stored_predictions(session, ids)).tolist()
        except QueryError:  # not a classifier
            return []
