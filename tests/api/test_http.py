"""The HTTP API end to end, through real HTTP (uvicorn) with a real worker, Redis and
PostgreSQL: submit, events, solutions, selection, weights, export; auth; bad input; a
schemathesis fuzz of every endpoint from the OpenAPI document."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load as load_safetensors
from sqlalchemy import delete

from ridgerider.problems.registry import load
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import create_job
from storage.keys import KEY_CACHE_SECONDS
from storage.models import JOB_ENDED, Job, Solution
from storage.synthetic import record_solution
from tests.api.server import serve
from tests.workers.pool import pool

PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    folder = tmp_path_factory.mktemp("http")
    mlflow = {"RIDGERIDER_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    with pool(folder, workers=1) as (running, _), serve(running, env=mlflow) as server:
        yield server, running


@pytest.fixture(scope="module")
def finished_job(api):
    """A himmelblau job submitted over HTTP and followed by its events to the end."""
    server, _ = api
    with server.client() as http:
        response = http.post("/jobs", json={"problem": "himmelblau"})
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/jobs/{job['id']}"
        events = []
        with http.stream("GET", f"/jobs/{job['id']}/events", timeout=120) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    events.append((kind, json.loads(line[5:])))
    return job["id"], events


def test_submit_events_and_the_finished_job(api, finished_job):
    server, running = api
    job_id, events = finished_job
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "finished" and events[-1][1]["status"] == "finished", running.logs()
    # Himmelblau's 9 critical points; 4 + 8 rides down from the maximum and the 4 saddles, and
    # 16 climbs (2 along each of a minimum's 2 eigenvectors)
    assert kinds.count("node") == 9 and kinds.count("ride") == 28 and kinds.count("minimum") == 4
    with server.client() as http:
        response = http.get(f"/jobs/{job_id}")
    assert response.status_code == 200 and "retry-after" not in response.headers
    body = response.json()
    assert body["progress"]["minima"] == 4 and body["stats"]["solutions"] == 4


def test_solutions_selection_weights_and_lineage(api, finished_job):
    server, _ = api
    job_id, _ = finished_job
    with server.client() as http:
        page = http.get(f"/jobs/{job_id}/solutions", params={"sort": "sharpness", "limit": 3})
        assert page.status_code == 200
        first = page.json()
        rest = http.get(
            f"/jobs/{job_id}/solutions",
            params={"sort": "sharpness", "limit": 3, "cursor": first["next_cursor"]},
        ).json()
        solutions = first["solutions"] + rest["solutions"]
        sharpness = [s["metrics"]["sharpness"] for s in solutions]
        assert len(solutions) == 4 and sharpness == sorted(sharpness)
        chosen = http.post(
            f"/jobs/{job_id}/select",
            json={"pareto": [{"name": "sharpness", "direction": "min"}]},
        ).json()
        assert [s["id"] for s in chosen["solutions"]] == [solutions[0]["id"]]
        best = solutions[0]
        weights = http.get(f"/solutions/{best['id']}/weights")
        assert weights.status_code == 200
        assert weights.headers["etag"] == f'"{best["weights_sha256"]}"'
        assert hashlib.sha256(weights.content).hexdigest() == best["weights_sha256"]
        theta = load_safetensors(weights.content)["theta"]
        assert load("himmelblau").loss(theta).item() == pytest.approx(best["metrics"]["loss"])
        unchanged = http.get(
            f"/solutions/{best['id']}/weights", headers={"If-None-Match": weights.headers["etag"]}
        )
        assert unchanged.status_code == 304
        detail = http.get(f"/solutions/{best['id']}").json()
        assert detail["lineage"] and detail["lineage"][-1]["to"] == best["node_id"]
        graph = http.get(f"/jobs/{job_id}/graph").json()
        assert len(graph["nodes"]) == 9 and len(graph["edges"]) == 28
        graphml = http.get(f"/jobs/{job_id}/graph", headers={"Accept": "application/graphml+xml"})
        assert graphml.headers["content-type"].startswith("application/graphml+xml")
        assert b"<graphml" in graphml.content
    assert torch.isfinite(theta).all()


def test_export_downloads_an_archive_that_opens(api, finished_job, tmp_path):
    server, running = api
    job_id, _ = finished_job
    with server.client() as http:
        response = http.get(f"/jobs/{job_id}/export", params={"pareto": "sharpness:min,loss:min"})
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        names = archive.getnames()
        card = archive.extractfile(f"ridgerider-job-{job_id}/MODEL_CARD.md").read().decode()
    assert "Pareto front over sharpness (min), loss (min)" in card
    assert any(n.endswith("plots/ride_tree.png") for n in names)
    result = running.cli(
        "export",
        str(job_id),
        str(tmp_path / "via-cli"),
        "--server",
        server.url,
        "--key",
        server.keys["alice"],
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "via-cli" / "weights" / "SHA256SUMS").read_text().count("\n") == 4


def test_the_cli_works_against_the_server(api, finished_job, tmp_path):
    server, running = api
    job_id, _ = finished_job
    remote = ("--server", server.url, "--key", server.keys["alice"])
    status = running.cli("status", str(job_id), "--format", "json", *remote)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "finished"
    listed = running.cli("solutions", str(job_id), "--format", "json", *remote)
    assert len(json.loads(listed.stdout)["solutions"]) == 4
    spec = tmp_path / "spec.json"
    spec.write_text('{"problem": "styblinski-tang:dim=2"}')
    submitted = running.cli("submit", str(spec), *remote)
    assert submitted.returncode == 0, submitted.stderr
    assert "4 distinct minima of styblinski-tang:dim=2" in submitted.stdout
    refused = running.cli("status", str(job_id), "--server", server.url, "--key", "rr_wrong")
    assert refused.returncode == 2 and "HTTP 401" in refused.stderr


def test_concurrent_exports_queue_in_the_export_process_and_the_rest_are_told_to_wait(
    api, finished_job
):
    """Twelve exports at once: at most four wait on the server's export process (429 with
    Retry-After beyond), each one built opens, and the API answers meanwhile."""
    server, _ = api
    job_id, _ = finished_job

    def download(_: int) -> httpx.Response:
        with server.client() as http:
            return http.get(f"/jobs/{job_id}/export")

    with concurrent.futures.ThreadPoolExecutor(12) as threads:
        exports = [threads.submit(download, i) for i in range(12)]
        with server.client() as http:
            assert http.get(f"/jobs/{job_id}").status_code == 200
        answers = [future.result() for future in exports]
    built = [a for a in answers if a.status_code == 200]
    told_to_wait = [a for a in answers if a.status_code == 429]
    assert len(built) + len(told_to_wait) == 12 and built and told_to_wait
    assert all(int(a.headers["retry-after"]) >= 1 for a in told_to_wait)
    for answer in built:
        with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
            assert f"ridgerider-job-{job_id}/MODEL_CARD.md" in archive.getnames()


def test_serve_gives_the_dashboard_page_and_its_assets_without_a_key(api):
    """They hold no data (the page asks the API, with a key); everything else needs one."""
    server, _ = api
    with server.client(None) as http:
        page = http.get("/")
        assets = [http.get(f"/dashboard/dashboard.{kind}") for kind in ("js", "css")]
        assert http.get("/jobs").status_code == 401
    assert page.status_code == 200 and "<title>ridgerider</title>" in page.text
    assert '<script src="/dashboard/dashboard.js"' in page.text
    assert [a.status_code for a in assets] == [200, 200]
    assert "sessionStorage" in assets[0].text and "localStorage" not in assets[0].text


def test_keys_are_required_and_scope_what_is_seen(api, finished_job):
    server, _ = api
    job_id, _ = finished_job
    with server.client(None) as anonymous:
        for public in ("/healthz", "/openapi.json", "/docs"):  # as the README says
            assert anonymous.get(public).status_code == 200, public
        response = anonymous.get(f"/jobs/{job_id}")
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = anonymous.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer rr_nope"})
        assert wrong.status_code == 401
    with server.client("bob") as bob:
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/solutions", f"/jobs/{job_id}/graph"):
            assert bob.get(path).status_code == 404
        assert bob.get("/jobs").json()["jobs"] == []
        with server.client() as alice:
            solution = alice.get(f"/jobs/{job_id}/solutions").json()["solutions"][0]["id"]
        assert bob.get(f"/solutions/{solution}").status_code == 404
        assert bob.get(f"/solutions/{solution}/weights").status_code == 404
        assert bob.post(f"/jobs/{job_id}/cancel").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "allowed"),
    [
        ({"problem": "himmelblau", "max_depth": 257}, "max_depth", {"le": "256"}),
        ({"problem": "himmelblau", "ridges_per_node": 0}, "ridges_per_node", {"ge": "1"}),
        ({"problem": "himmelblau", "max_nodes": "many"}, "max_nodes", None),
        ({"problem": "rosenbrock"}, "problem", None),
        ({"problem": "os:system"}, "problem", None),
        ({"problem": "tests.problems:tiny_net"}, "problem", None),
        ({"problem": "himmelblau", "colour": "red"}, "colour", None),
        ({"problem": "himmelblau", "seed": 10**30}, "seed", {"le": "4294967295"}),
        ({"problem": "h" * 201}, "problem", None),
        ({"problem": "himmelblau\u0000"}, "problem", None),
    ],
)
def test_bad_submissions_are_problem_json_naming_the_field(api, body, field, allowed):
    server, _ = api
    with server.client() as http:
        response = http.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    if allowed:
        assert errors[0]["allowed"] == allowed


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("digits-mlp:hidden=1000000000", "hidden must be an integer in [1, 1024]"),
        ("styblinski-tang:dim=0", "dim must be an integer in [1, 1024], got 0"),
        ("styblinski-tang:dim=2,dim=3", "'dim' is given twice"),
        ("digits-mlp:activation=zzz", "activation must be one of 'tanh', 'gelu'"),
        ("tree-mdp:depth=3", "depth must be an integer in [4, 10], got 3"),
    ],
)
def test_problem_arguments_out_of_range_are_refused_before_anything_is_queued(
    api, problem, message
):
    server, _ = api
    with server.client() as http:
        before = len(http.get("/jobs").json()["jobs"])
        response = http.post("/jobs", json={"problem": problem})
        assert response.status_code == 422, response.text
        (error,) = response.json()["errors"]
        assert error["field"] == "problem" and message in error["message"]
        assert len(http.get("/jobs").json()["jobs"]) == before


def test_a_paper_problem_runs_on_the_pool_and_its_solutions_filter_by_behaviour(api):
    server, running = api
    with server.client() as http:
        response = http.post("/jobs", json={"problem": "lever-game:levers=2", "max_nodes": 6})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 180
        while (status := http.get(f"/jobs/{job_id}").json()["status"]) not in JOB_ENDED:
            assert time.monotonic() < deadline, running.logs()
            time.sleep(0.5)
        assert status == "finished", running.logs()
        every = http.get(f"/jobs/{job_id}/solutions").json()["solutions"]
        best = http.get(
            f"/jobs/{job_id}/solutions", params={"filter": "payoff > 0.9 and coordinated == 1"}
        ).json()["solutions"]
    assert every, "the lever game's search reached coordinated minima"
    for solution in every:
        assert solution["metrics"]["payoff"] in (1.0, 0.8, 0.6)
    assert [s["id"] for s in best] == [s["id"] for s in every if s["metrics"]["payoff"] == 1.0]


def test_problems_lists_every_parameter_with_its_range(api):
    server, _ = api
    with server.client() as http:
        listed = {p["name"]: p for p in http.get("/problems").json()}
    assert set(listed) >= {"colored-mnist", "mnist-mlp", "tree-mdp", "lever-game"}
    depth = listed["tree-mdp"]["parameters"]["depth"]
    assert depth["kind"] == "integer" and (depth["minimum"], depth["maximum"]) == (4, 10)
    assert depth["default"] == 6 and depth["allowed"] == "an integer in [4, 10]"
    entropy = listed["lever-game"]["parameters"]["entropy"]
    assert entropy["exclusive_minimum"] and entropy["exclusive_maximum"]
    assert listed["mnist-mlp"]["parameters"]["activation"]["choices"] == ["tanh", "gelu"]
    for problem in listed.values():
        assert all(p["allowed"] for p in problem["parameters"].values()), problem["name"]


def test_malformed_and_oversized_requests_are_4xx(api, finished_job):
    server, _ = api
    job_id, _ = finished_job
    with server.client() as http:
        malformed = http.post(
            "/jobs", content=b'{"problem": ', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.headers["content-type"] == PROBLEM_JSON
        assert malformed.json()["detail"].startswith("the body is not JSON")
        huge = http.post(
            "/jobs",
            content=b"{" + b" " * 100_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413 and huge.json()["status"] == 413
        bad_filter = http.get(f"/jobs/{job_id}/solutions", params={"filter": "loss < "})
        assert bad_filter.status_code == 422
        assert bad_filter.json()["errors"][0] == {
            "field": "filter",
            "message": "expected a number, got 'the end'",
            "position": 7,
        }
        for params in ({"limit": 0}, {"limit": 1001}, {"sort": "nope"}):
            response = http.get(f"/jobs/{job_id}/solutions", params=params)
            assert response.status_code == 422, params
        assert http.get("/jobs/999999").status_code == 404
        assert http.post(f"/jobs/{job_id}/select", json={}).status_code == 422


def test_bodies_sent_in_chunks_types_and_long_ids_are_checked_strictly(api):
    server, _ = api

    def chunks(size: int):
        for _ in range(size // 1024):
            yield b" " * 1024

    with server.client() as http:
        chunked = http.post(
            "/jobs%22,%22status%22:200,%22x%22:%22",
            content=chunks(100 * 1024),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413 and chunked.headers["content-type"] == PROBLEM_JSON
        body = chunked.json()  # the path cannot break out of its string
        assert body["status"] == 413 and body["instance"] == '/jobs","status":200,"x":"'
        small = http.post(
            "/jobs",
            content=iter([b'{"problem": ', b'"himmelblau", "max_nodes": "5"}']),
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 422 and small.json()["errors"][0]["field"] == "max_nodes"
        flag = http.post("/jobs", json={"problem": "himmelblau", "max_nodes": True})
        assert flag.status_code == 422 and flag.json()["errors"][0]["field"] == "max_nodes"
        for path in ("/jobs/", "/solutions/", "/jobs/1/solutions?limit="):
            response = http.get(path + "9" * 5000)
            assert response.status_code == 422, path
            assert "9" * 30 not in response.json()["detail"] and len(response.text) < 1000, path


def forged_cursor(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_deep_filters_and_forged_cursors_are_4xx_problem_json(api, finished_job):
    server, _ = api
    job_id, _ = finished_job
    too_deep = [
        "not " * 50 + "loss > 1",
        "not " * 400 + "loss > 1",
        "(" * 990 + "loss>1" + ")" * 990,
    ]
    with server.client() as http:
        for expression in too_deep:
            for method, path, kwargs in (
                ("GET", "solutions", {"params": {"filter": expression}}),
                ("POST", "select", {"json": {"diverse": 2, "filter": expression}}),
                ("GET", "export", {"params": {"diverse": 2, "filter": expression}}),
            ):
                response = http.request(method, f"/jobs/{job_id}/{path}", **kwargs)
                assert response.status_code == 422, (path, response.text[:300])
                assert response.headers["content-type"] == PROBLEM_JSON
                assert "at most 16 deep" in response.json()["detail"]
        for cursor in (
            forged_cursor({"j": job_id, "v": 1, "id": 10**30, "s": "id", "f": ""}),
            forged_cursor("[" * 1400),
            "garbage",
        ):
            response = http.get(f"/jobs/{job_id}/solutions", params={"cursor": cursor})
            assert response.status_code == 400, response.text[:300]
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["errors"][0]["field"] == "cursor"
        first = http.get(f"/jobs/{job_id}/solutions", params={"limit": 1}).json()
        if first["next_cursor"]:
            params = {"limit": 1, "cursor": first["next_cursor"]}
            assert http.get(f"/jobs/{job_id}/solutions", params=params).status_code == 200


def test_broken_artifacts_and_rows_are_500_problem_json_with_a_request_id(api):
    """A missing and a corrupt weights file, and a metrics row that no longer parses: each is a
    500 problem+json naming what failed and carrying a request id that the server's log holds,
    never a traceback or a server path. The broken job is deleted afterwards: the server is
    shared with the fuzz, which must meet only healthy rows."""
    server, running = api
    db = Database(running.db_url)
    with db.session() as session:
        job = create_job(session, {"problem": "himmelblau"}, owner="alice")
        job.status = "finished"
        job_id = job.id
    try:
        missing = record_solution(db, job_id, {"loss": 1.0})
        corrupt = record_solution(db, job_id, {"loss": 2.0})
        unreadable = record_solution(db, job_id, {"loss": 3.0})
        store = LocalArtifactStore(running.env["RIDGERIDER_ARTIFACTS"])
        sha = hashlib.sha256(b"the weights as stored").hexdigest()
        store.path(sha).parent.mkdir(parents=True, exist_ok=True)
        store.path(sha).write_bytes(b"the weights after a disk error")
        with db.session() as session:
            session.get(Solution, corrupt).weights_sha256 = sha
            session.get(Solution, unreadable).metrics_json = "{not json"
        with server.client() as http:
            answers = {
                "missing": http.get(f"/solutions/{missing}/weights"),
                "corrupt": http.get(f"/solutions/{corrupt}/weights"),
                "export": http.get(f"/jobs/{job_id}/export"),
                "row": http.get(f"/jobs/{job_id}/solutions", params={"sort": "-loss", "limit": 1}),
            }
    finally:
        with db.session() as session:
            session.execute(delete(Job).where(Job.id == job_id))
        db.dispose()
    log = (running.folder / "serve.log").read_text()
    for name, response in answers.items():
        assert response.status_code == 500, (name, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON, name
        body = response.json()
        assert body["request_id"] == response.headers["x-request-id"], name
        assert body["request_id"] in body["detail"] and body["request_id"] in log, name
        assert "Traceback" not in response.text and str(running.folder) not in response.text
    assert answers["missing"].json()["title"] == "Missing Artifact"
    assert answers["corrupt"].json()["title"] == "Corrupt Artifact"
    assert sha in answers["corrupt"].json()["detail"]
    assert answers["row"].json()["title"] == "Internal Server Error"


def test_a_retried_submission_returns_the_same_job(api):
    server, _ = api
    with server.client() as http:
        headers = {"Idempotency-Key": "retry-1"}
        first = http.post("/jobs", json={"problem": "himmelblau", "seed": 7}, headers=headers)
        second = http.post("/jobs", json={"problem": "himmelblau", "seed": 7}, headers=headers)
        other = http.post("/jobs", json={"problem": "himmelblau", "seed": 7})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] != other.json()["id"]


def test_an_idempotency_key_sent_with_another_spec_is_refused(api):
    server, _ = api
    with server.client() as http:
        headers = {"Idempotency-Key": "retry-2"}
        first = http.post("/jobs", json={"problem": "himmelblau", "seed": 7}, headers=headers)
        before = len(http.get("/jobs").json()["jobs"])
        changed = http.post("/jobs", json={"problem": "himmelblau", "seed": 8}, headers=headers)
        assert len(http.get("/jobs").json()["jobs"]) == before
        same = http.post("/jobs", json={"problem": "himmelblau", "seed": 7}, headers=headers)
        bob = http.post(
            "/jobs",
            json={"problem": "himmelblau", "seed": 8},
            headers={**headers, "Authorization": f"Bearer {server.keys['bob']}"},
        )
    assert changed.status_code == 422 and changed.headers["content-type"] == PROBLEM_JSON
    (error,) = changed.json()["errors"]
    assert error["field"] == "Idempotency-Key" and f"job {first.json()['id']}" in error["message"]
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    assert bob.status_code == 202 and bob.json()["id"] != first.json()["id"]  # keys are per owner


def test_a_fuzz_of_every_endpoint_finds_no_5xx_and_no_schema_breach(api, finished_job, tmp_path):
    """Every endpoint from the OpenAPI document, and sequences that follow its links (a job
    submitted, then read, cancelled, paged); every error must be problem+json. `make fuzz`
    runs it with more examples (RIDGERIDER_FUZZ_EXAMPLES)."""
    server, _ = api
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.keys['alice']}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "errors_are_problem_json",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            os.environ.get("RIDGERIDER_FUZZ_EXAMPLES", "25"),
            "--exclude-path-regex",
            "/events$",
            "--request-timeout",
            "60",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,  # schemathesis keeps a cache in its working folder
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_checks",
            "PYTHONPATH": str(Path(__file__).parents[2]),
        },
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Stateful" in result.stdout, result.stdout[-3000:]


def test_pages_and_progress_are_kept_until_the_job_records_something(api, finished_job):
    server, running = api
    job_id, _ = finished_job
    query = {"sort": "-loss", "limit": 100}
    with server.client() as http:
        solutions = http.get(f"/jobs/{job_id}").json()["progress"]["solutions"]
        first = http.get(f"/jobs/{job_id}/solutions", params=query)
        tag = first.headers["etag"]
        again = http.get(f"/jobs/{job_id}/solutions", params=query)
        assert (again.headers["etag"], again.json()) == (tag, first.json())
        unchanged = http.get(
            f"/jobs/{job_id}/solutions", params=query, headers={"If-None-Match": tag}
        )
        assert (unchanged.status_code, unchanged.headers["etag"], unchanged.content) == (
            304,
            tag,
            b"",
        )
        metrics = dict(first.json()["solutions"][0]["metrics"], loss=1e6)  # sorts first
        db = Database(running.db_url)
        try:
            added = record_solution(db, job_id, metrics)
        finally:
            db.dispose()
        after = http.get(f"/jobs/{job_id}/solutions", params=query, headers={"If-None-Match": tag})
        assert after.status_code == 200 and after.headers["etag"] != tag
        rows = after.json()["solutions"]
        assert [row["id"] for row in rows] == [added] + [
            row["id"] for row in first.json()["solutions"]
        ]
        assert rows[0]["metrics"] == metrics
        assert http.get(f"/jobs/{job_id}").json()["progress"]["solutions"] == solutions + 1


def test_a_revoked_key_is_refused_within_the_key_cache_time(api):
    server, running = api
    made = running.cli("keys", "create", "carol")
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as carol:
        assert carol.get("/jobs").status_code == 200  # now the server has it cached
        revoked = running.cli("keys", "revoke", "carol")
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while carol.get("/jobs").status_code == 200:
            assert time.monotonic() - started < KEY_CACHE_SECONDS + 5, "still accepted"
            time.sleep(0.5)
        assert carol.get("/jobs").status_code == 401
