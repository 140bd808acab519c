"""A schemathesis check for the fuzz (`SCHEMATHESIS_HOOKS=tests.api.schemathesis_checks`):
every error response, 500 included, is RFC 9457 problem details."""

from __future__ import annotations

import json

import schemathesis

PROBLEM_JSON = "application/problem+json"
# uvicorn's answer to bytes its HTTP parser rejects (a header that is no header): the request
# never reaches the app, which cannot answer it.
UNPARSABLE = b"Invalid HTTP request received."


@schemathesis.check
def errors_are_problem_json(ctx, response, case) -> None:
    if response.status_code < 400:
        return
    if response.status_code == 400 and response.content == UNPARSABLE:
        return
    media = response.headers.get("content-type", [""])[0]
    if media != PROBLEM_JSON:
        raise AssertionError(f"HTTP {response.status_code} answered {media!r}, not {PROBLEM_JSON}")
    body = json.loads(response.content)
    if body.get("status") != response.status_code or not body.get("title"):
        raise AssertionError(f"HTTP {response.status_code}: problem details lack status or title")
