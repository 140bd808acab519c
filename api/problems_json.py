"""RFC 9457 problem details (`application/problem+json`) for every error the API returns."""

from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.artifacts import CorruptArtifactError, MissingArtifactError

MEDIA_TYPE = "application/problem+json"
MAX_INSTANCE = 200  # characters of the path a problem echoes
log = logging.getLogger(__name__)


class ProblemError(Exception):
    """An error the API reports as problem details; `errors` name fields and allowed values."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance(request.url.path),
        **(extra or {}),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def instance(path: str) -> str:
    """The request's path as a problem's `instance`, cut short: a client's long path is not
    worth echoing."""
    return path if len(path) <= MAX_INSTANCE else path[:MAX_INSTANCE] + "..."


def server_error(request: Request, error: Exception, title: str, detail: str) -> JSONResponse:
    """A 500 whose body carries a request id, logged with the error's traceback under that id,
    so that an operator can find what a client reports (and the client sees no internals)."""
    request_id = uuid.uuid4().hex
    log.error(
        "request %s: %s %s failed", request_id, request.method, request.url.path, exc_info=error
    )
    return problem_response(
        request,
        500,
        title,
        f"{detail} (request id {request_id})",
        headers={"X-Request-ID": request_id},
        extra={"request_id": request_id},
    )


def _field(location: tuple) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Route our errors, validation and HTTP errors, and broken artifacts to problem details
    (any other error: `UnexpectedErrors`)."""

    @app.exception_handler(ProblemError)
    async def _ours(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(
            request, error.status, error.title, error.detail, error.errors, error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _field(e["loc"]),
                "message": e["msg"].removeprefix("Value error, "),
                **_allowed(e),
            }
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if any(e["type"] == "json_invalid" for e in error.errors()):
            detail = "; ".join(
                f"{e['field']}: {e['message']} ({raw.get('ctx', {}).get('error', '')})"
                for e, raw in zip(errors, error.errors(), strict=True)
                if raw["type"] == "json_invalid"
            )
            return problem_response(
                request, 400, "Bad Request", f"the body is not JSON: {detail}", errors
            )
        return problem_response(request, 422, "Invalid request", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            request,
            error.status_code,
            _title(error.status_code),
            str(error.detail),
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(CorruptArtifactError)
    @app.exception_handler(MissingArtifactError)
    async def _artifact(
        request: Request, error: CorruptArtifactError | MissingArtifactError
    ) -> JSONResponse:
        corrupt = isinstance(error, CorruptArtifactError)
        failed = "failed its sha256 check" if corrupt else "is missing"
        detail = f"the stored artifact {error.sha256} {failed}; tell the server's operator"
        title = "Corrupt Artifact" if corrupt else "Missing Artifact"
        return server_error(request, error, title, detail)


class UnexpectedErrors:
    """Answer an error no handler took with a 500 problem+json (request id, logged). A
    middleware rather than an `Exception` handler: Starlette re-raises after those, and the
    server then drops the client's keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception as error:
            if started:  # too late for another answer: the server closes the connection
                raise
            detail = "an unexpected error; the server's log has it"
            response = server_error(Request(scope), error, "Internal Server Error", detail)
            await response(scope, receive, send)


def _allowed(error: dict[str, Any]) -> dict[str, Any]:
    """The allowed range, where pydantic says it (ge, le, gt, lt, literal choices)."""
    context = error.get("ctx") or {}
    allowed = {k: v for k, v in context.items() if k in ("ge", "le", "gt", "lt", "expected")}
    return {"allowed": {k: str(v) for k, v in allowed.items()}} if allowed else {}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
