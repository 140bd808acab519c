"""Per-key limits through real HTTP (`ridgerider serve` over a pool whose workers are stopped,
so that jobs stay queued): jobs in flight, submissions a minute and open event streams are
refused past their limit with 429 problem+json and Retry-After; streams end after their
longest time; another key is not held back."""

from __future__ import annotations

import pytest

from tests.api.server import serve
from tests.workers.pool import pool

PROBLEM_JSON = "application/problem+json"
LIMITS = {
    "RIDGERIDER_MAX_ACTIVE_JOBS": "2",
    "RIDGERIDER_SUBMISSIONS_PER_MINUTE": "3",
    "RIDGERIDER_STREAMS_PER_KEY": "2",
    "RIDGERIDER_STREAM_SECONDS": "3",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with (
        pool(tmp_path_factory.mktemp("limits"), workers=0) as (running, _),
        serve(running, env=LIMITS) as server,
    ):
        yield server


def refused(response, names: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) >= 1
    assert names in response.json()["detail"]


def test_jobs_in_flight_and_submissions_a_minute_are_bounded_per_key(server):
    body = {"problem": "himmelblau"}
    with server.client() as alice, server.client("bob") as bob:
        first, second = (alice.post("/jobs", json=body).json()["id"] for _ in range(2))
        refused(alice.post("/jobs", json=body), "RIDGERIDER_MAX_ACTIVE_JOBS = 2")
        assert bob.post("/jobs", json=body).status_code == 202  # keys are counted apart
        assert alice.post(f"/jobs/{first}/cancel").json()["status"] == "cancelled"
        assert alice.post("/jobs", json=body).status_code == 202  # a third this minute
        assert alice.post(f"/jobs/{second}/cancel").json()["status"] == "cancelled"
        late = alice.post("/jobs", json=body)
        refused(late, "RIDGERIDER_SUBMISSIONS_PER_MINUTE = 3")
        assert int(late.headers["retry-after"]) <= 61


def test_event_streams_are_bounded_per_key_and_end_after_their_time(server):
    with server.client("bob") as bob:
        job_id = bob.get("/jobs").json()["jobs"][0]["id"]  # queued: its stream never ends
        path = f"/jobs/{job_id}/events"
        with bob.stream("GET", path) as one, bob.stream("GET", path) as two:
            assert one.status_code == two.status_code == 200
            refused(bob.get(path), "RIDGERIDER_STREAMS_PER_KEY = 2")
            events = [line for line in one.iter_lines() if line.startswith("event:")]
        assert events[-1] == "event: expired" and "event: progress" in events
        with bob.stream("GET", path) as again:  # the slots were given back
            assert again.status_code == 200
