"""`/jobs/{id}/events`: a job's progress as server-sent events, woken by the broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import OwnerDep, Services, ServicesDep
from api.notifications import job_changes
from api.routes.jobs import check_owner
from api.schemas import JobId
from storage.events import job_events
from storage.jobs import job_state
from storage.models import JOB_ENDED

router = APIRouter(tags=["jobs"])
KEEPALIVE_SECONDS = 15.0


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
        async with job_changes(services.settings.broker_url, job_id) as changed:
            while not await request.is_disconnected():
                now = time.monotonic()
                current = await asyncio.to_thread(_job_state, services, job_id)
                if current != version:
                    version = current
                    batch, job = await asyncio.to_thread(_new_events, services, job_id, seen)
                    for kind, data in batch:
                        yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                    last_sent = now
                    if job["status"] in JOB_ENDED:
                        yield f"event: finished\ndata: {json.dumps(job)}\n\n"
                        return
                elif now - last_sent >= KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    last_sent = now
                if now - started >= services.settings.stream_seconds:
                    after = {"seconds": services.settings.stream_seconds}
                    yield f"event: expired\ndata: {json.dumps(after)}\n\n"
                    return
                await changed(KEEPALIVE_SECONDS)
    finally:
        services.streams.give_back(owner)


def _new_events(
    services: Services, job_id: JobId, seen: dict[str, int]
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    with services.db.session(readonly=True) as session:
        return job_events(session, job_id, seen)
