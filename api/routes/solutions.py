"""`/solutions/{id}`: one solution's metrics and lineage, and its weights."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlalchemy.orm import Session

from api.deps import OwnerDep, ServicesDep
from api.problems_json import ProblemError
from api.schemas import SolutionDetail, SolutionId
from storage.jobs import get_job
from storage.models import Solution
from storage.queries import lineage, solution_rows

router = APIRouter(tags=["solutions"])
SAFETENSORS = "application/octet-stream"


def own_solution(session: Session, owner: str, solution_id: int) -> Solution:
    """The caller's solution; another owner's answers 404, as a missing one does."""
    solution = session.get(Solution, solution_id)
    if solution is None or get_job(session, solution.job_id).owner != owner:
        raise ProblemError(404, "Not Found", f"no solution {solution_id}")
    return solution


@router.get("/solutions/{solution_id}", response_model=SolutionDetail)
def solution(solution_id: SolutionId, services: ServicesDep, owner: OwnerDep) -> SolutionDetail:
    """Metrics, and the lineage: the rides from the start to this minimum."""
    with services.db.session(readonly=True) as session:
        found = own_solution(session, owner, solution_id)
        (row,) = solution_rows(session, [solution_id])
        rides = lineage(session, found.node_id)
    return SolutionDetail(**row.to_json(), lineage=rides)


@router.get(
    "/solutions/{solution_id}/weights",
    response_class=Response,
    responses={200: {"content": {SAFETENSORS: {}}}, 304: {"description": "not modified"}},
)
def weights(
    solution_id: SolutionId,
    services: ServicesDep,
    owner: OwnerDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The flat parameters as safetensors (tensor `theta`); the ETag is their sha256."""
    with services.db.session(readonly=True) as session:
        found = own_solution(session, owner, solution_id)
    etag = f'"{found.weights_sha256}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    data = services.store.get(found.weights_sha256)
    return Response(
        data,
        media_type=SAFETENSORS,
        headers={
            "ETag": etag,
            "Content-Disposition": f'attachment; filename="solution-{solution_id}.safetensors"',
        },
    )
