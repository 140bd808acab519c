"""`/healthz`: are the database and the broker reachable (no key needed)."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> JSONResponse:
    """200 when the database and the broker answer, 503 (saying which does not) otherwise."""
    status = {"database": "ok", "broker": "ok"}
    try:
        with services.db.session(readonly=True) as session:
            session.execute(text("SELECT 1"))
    except Exception as error:  # any failure means unreachable
        status["database"] = f"unreachable: {type(error).__name__}"
    client = redis.Redis.from_url(services.broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        status["broker"] = f"unreachable: {type(error).__name__}"
    finally:
        client.close()
    healthy = all(value == "ok" for value in status.values())
    return JSONResponse(status, status_code=200 if healthy else 503)
