"""`/solutions/{id}`: one solution's metrics and lineage, and its weights."""

from __future__ import annotations

import itertools
from typing import Annotated

import networkx as nx
from fastapi import APIRouter, Header, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import OwnerDep, ServicesDep
from api.problems_json import ProblemError
from api.schemas import SolutionDetail, SolutionId
from storage.jobs import ROOT_FINGERPRINT, get_job
from storage.models import Node, Solution
from storage.queries import lineage_graph, solution_rows

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
        graph = lineage_graph(session, found.job_id)
        root = session.scalar(
            select(Node.id).where(Node.job_id == found.job_id, Node.fingerprint == ROOT_FINGERPRINT)
        )
    path = nx.shortest_path(graph, root, found.node_id)
    lineage = []
    for a, b in itertools.pairwise(path):
        ride = min(graph[a][b].items())[1]
        lineage.append(
            {
                "from": a,
                "to": b,
                "eigen_index": ride["eigen_index"],
                "sign": ride["sign"],
                "eigenvalue": ride["eigenvalue"],
            }
        )
    return SolutionDetail(**row.to_json(), lineage=lineage)


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
