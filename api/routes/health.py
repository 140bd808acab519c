"""`/healthz`: are the database and the broker reachable (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import update

from api.deps import ServicesDep
from api.schemas import Health
from storage.models import ServiceSecret

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> JSONResponse:
    """200 when the database takes writes and the broker answers, 503 (saying which does not)
    otherwise. The database is asked for a write that changes nothing: a read-only one (a
    replica, a read-only file) answers reads but would fail every job."""
    status = {"database": "ok", "broker": "ok"}
    nothing = ServiceSecret.name == ""
    try:
        with services.db.session() as session:
            session.execute(update(ServiceSecret).where(nothing).values(name=ServiceSecret.name))
    except Exception as error:  # any failure means unusable
        status["database"] = f"not writable: {type(error).__name__}"
    status["broker"] = services.pool.status()
    healthy = all(value == "ok" for value in status.values())
    return JSONResponse(status, status_code=200 if healthy else 503)
