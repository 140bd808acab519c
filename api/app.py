"""The FastAPI application: routers by resource, problem+json errors, a body-size limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems_json
from api.deps import Services
from api.routes import dashboard, events, handoffs, health, jobs, problems, results, solutions
from api.schemas import ERRORS
from ridgerider import __version__
from workers.settings import load_settings

MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 problem+json, whether declared or sent
    in chunks: a body is read whole (it is small) before the app sees it, so that no parser
    turns the refusal into another error."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        read: list[Message] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"the request body is over {self.limit} bytes",
                "instance": problems_json.instance(scope["path"]),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", problems_json.MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run at most `settings.server_threads` sync endpoints at once: their work is mostly Python
    holding the GIL, so more threads mostly add switching; requests beyond them wait in the
    event loop."""
    threads = app.state.services.settings.server_threads
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    yield
    app.state.services.exports.close()
    app.state.services.handoffs.close()


def create_app(services: Services) -> FastAPI:
    """The API over `services` (database, artifact store, the pool to enqueue on)."""
    app = FastAPI(
        lifespan=_lifespan,
        title="ridgerider",
        version=__version__,
        description="Solution-diversity search with Ridge Rider: submit searches, watch them, "
        "query and select the distinct minima they found. Every endpoint but /healthz and this "
        "description needs an API key (`Authorization: Bearer KEY`); errors are RFC 9457 "
        "problem details.",
    )
    app.state.services = services
    problems_json.install(app)
    for router in (
        jobs.router,
        events.router,
        results.router,
        solutions.router,
        problems.router,
        handoffs.router,
    ):
        app.include_router(router, responses=ERRORS)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.mount("/dashboard", dashboard.assets, name="dashboard")
    app.add_middleware(BodyLimit)
    app.add_middleware(problems_json.UnexpectedErrors)
    return app


def app_from_environment() -> FastAPI:
    """The API over the services that the `RIDGERIDER_*` variables name: what each process of
    `ridgerider serve --workers N` builds (uvicorn starts them with no arguments)."""
    return create_app(Services.of(load_settings()))
