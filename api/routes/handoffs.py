"""`/jobs/{id}/mlflow`: hand a job's chosen solutions to the MLflow tracking server this server
is set up with, in the background, and watch how it goes."""

from __future__ import annotations

import asyncio
import importlib.util
from functools import partial

from fastapi import APIRouter, Response

from api.background import hand_off_to_mlflow
from api.deps import OwnerDep, Services, ServicesDep
from api.problems_json import ProblemError
from api.routes.results import choose_or_422
from api.schemas import MLFLOW_503, HandoffId, HandoffOut, HandoffRequest, JobId
from storage.handoffs import create_handoff, finish_handoff, get_handoff
from storage.models import Handoff
from workers.mlflow_handoff import INSTALL_HINT

router = APIRouter(tags=["mlflow"])
TRACKING_URI_HINT = (
    "this server hands off to no MLflow tracking server: start it with "
    "`ridgerider serve --mlflow-tracking-uri URI`"
)


@router.post(
    "/jobs/{job_id}/mlflow",
    status_code=202,
    response_model=HandoffOut,
    responses={503: MLFLOW_503},
)
async def hand_off(
    job_id: JobId,
    request: HandoffRequest,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
) -> HandoffOut:
    """Log the job's chosen solutions to MLflow: a parent run for the job (spec, set metrics,
    model card, lineage, plots), a nested run per solution with its model, and with
    `registered_model` a model version each. Runs in the background (poll the returned
    hand-off); a second hand-off of the same selection adds no run and no version."""
    if services.settings.mlflow_tracking_uri is None:
        raise ProblemError(503, "Service Unavailable", TRACKING_URI_HINT)
    if importlib.util.find_spec("mlflow") is None:
        raise ProblemError(503, "Service Unavailable", f"{INSTALL_HINT} (on the server)")
    if request.pareto is not None and request.diverse is not None:
        raise ProblemError(
            422,
            "Invalid selection",
            "give at most one of pareto and diverse",
            [{"field": "pareto", "message": "at most one of pareto, diverse"}],
        )
    services.handoffs.check_room()
    handoff = await asyncio.to_thread(_record, services, owner, job_id, request)
    services.handoffs.start(
        hand_off_to_mlflow,
        services.db.url.render_as_string(hide_password=False),
        str(services.store.root),
        handoff.id,
        services.settings.mlflow_tracking_uri,
        on_error=partial(_fail, services, handoff.id),
    )
    response.headers["Location"] = f"/jobs/{job_id}/mlflow/{handoff.id}"
    return HandoffOut.model_validate(handoff)


def _record(services: Services, owner: str, job_id: int, request: HandoffRequest) -> Handoff:
    """The hand-off, queued, with the ids its selection picks now."""
    with services.db.session() as session:
        ids, how = choose_or_422(session, owner, job_id, request.choice())
        asked = request.model_dump(include={"experiment", "registered_model"})
        return create_handoff(session, job_id, asked | {"ids": ids, "selection": how})


@router.get("/jobs/{job_id}/mlflow/{handoff_id}", response_model=HandoffOut)
def handoff_status(
    job_id: JobId, handoff_id: HandoffId, services: ServicesDep, owner: OwnerDep
) -> HandoffOut:
    """Where a hand-off is; once finished, the experiment, parent run, each solution's run and
    model version."""
    with services.db.session(readonly=True) as session:
        handoff = get_handoff(session, job_id, handoff_id, owner)
        if handoff is None:
            raise ProblemError(404, "Not Found", f"no hand-off {handoff_id} of job {job_id}")
        return HandoffOut.model_validate(handoff)


def _fail(services: Services, handoff_id: int, error: BaseException) -> None:
    """The hand-off failed outside its own process (the process died)."""
    with services.db.session() as session:
        finish_handoff(session, handoff_id, error=error)
