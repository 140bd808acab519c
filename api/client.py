"""The command line's HTTP client: the same operations as the embedded database, on a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

EVENTS_READ_TIMEOUT = 60.0  # seconds without a byte: the server sends a comment every 15 s


class ClientError(RuntimeError):
    """The server refused a request (its problem details' detail), or could not be reached."""


class Client:
    """A ridgerider server at `server`, called with API key `key`."""

    def __init__(self, server: str, key: str | None, timeout: float = 60) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach {self.http.base_url}: {error}") from None
        if response.status_code >= 400:
            raise ClientError(_detail(response))
        return response

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/jobs", json=spec, headers=headers).json()

    def job(self, job_id: int) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}").json()

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{job_id}/cancel").json()

    def solutions(self, job_id: int, **query: Any) -> dict[str, Any]:
        params = {k: v for k, v in query.items() if v is not None}
        return self.request("GET", f"/jobs/{job_id}/solutions", params=params).json()

    def select(self, job_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{job_id}/select", json=body).json()

    def export(self, job_id: int, path: Path, **query: Any) -> Path:
        """Download the export archive to `path`, a chunk at a time (a partial file is removed
        if the download fails)."""
        params = {k: v for k, v in query.items() if v is not None}
        try:
            with self.http.stream("GET", f"/jobs/{job_id}/export", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_detail(response))
                with path.open("xb") as archive:
                    for chunk in response.iter_bytes():
                        archive.write(chunk)
        except httpx.HTTPError as error:
            path.unlink(missing_ok=True)
            raise ClientError(f"the export's download failed: {error}") from None
        return path

    def events(self, job_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's server-sent events as (event, data) until the job ends. A stream the
        server ends after its longest time (`expired`) is opened again, and the events it
        repeats are left out."""
        seen: dict[str, int] = {}
        while True:
            expired = False
            for event, data in self._event_stream(job_id):
                if event == "expired":
                    expired = True
                elif event in ("node", "ride", "minimum"):
                    if data["id"] > seen.get(event, 0):
                        seen[event] = data["id"]
                        yield event, data
                else:
                    yield event, data
            if not expired:
                return

    def _event_stream(self, job_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            timeout = httpx.Timeout(self.http.timeout.connect, read=EVENTS_READ_TIMEOUT)
            with self.http.stream("GET", f"/jobs/{job_id}/events", timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_detail(response))
                event, data = "message", []
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield event, json.loads("\n".join(data))
                        event, data = "message", []
        except httpx.HTTPError as error:
            raise ClientError(f"lost the event stream: {error}") from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return f"HTTP {response.status_code}: {body.get('detail', body)}"
