"""`POST /jobs/{id}/mlflow` through a live `ridgerider serve` to a live `mlflow server` (each a
real process on a loopback port): done in the background, its state readable, everything read
back through MLflow's client (runs, metrics, a model that predicts the stored predictions,
registered versions with the weights' sha256); a second hand-off adds nothing; another key sees
nothing; a server set up without MLflow says how to set it up."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from api.app import create_app
from api.deps import Services
from ridgerider.problems.base import class_probabilities
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec
from storage.artifacts import LocalArtifactStore
from storage.jobs import create_job
from storage.models import Solution
from tests.api.server import serve
from tests.workers.mlflow_store import mlflow_server
from tests.workers.pool import pool
from workers.local import run_job
from workers.pool import Pool
from workers.settings import load_settings

PROBLEM = "tests.problems:tiny_net"
FINISH_TIMEOUT = 180


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An MLflow server, a finished tiny-net job of alice's, and `serve` pointed at MLflow."""
    folder = tmp_path_factory.mktemp("http-mlflow")
    with mlflow_server(folder) as tracking, pool(folder, workers=0) as (running, db):
        store = LocalArtifactStore(folder / "artifacts")
        with db.session() as session:
            spec = SearchSpec(problem=PROBLEM, max_nodes=12, max_depth=4).model_dump()
            job_id = create_job(session, spec, owner="alice").id
        run_job(db, store, job_id)
        env = {"RIDGERIDER_MLFLOW_TRACKING_URI": tracking}
        with serve(running, env=env) as server:
            yield server, tracking, job_id, db


def finished(http, location: str) -> dict:
    deadline = time.monotonic() + FINISH_TIMEOUT
    while True:
        handoff = http.get(location).json()
        if handoff["state"] in ("finished", "failed") or time.monotonic() > deadline:
            return handoff
        time.sleep(0.5)


def test_a_hand_off_over_http_lands_in_mlflow_once(served):
    server, tracking, job_id, db = served
    body = {"filter": "test_accuracy >= 0", "experiment": "http", "registered_model": "tiny"}
    with server.client() as http:
        response = http.post(f"/jobs/{job_id}/mlflow", json=body)
        assert response.status_code == 202, response.text
        assert response.json()["state"] == "queued"
        location = response.headers["location"]
        handoff = finished(http, location)
        assert handoff["state"] == "finished", handoff["error"]
        again = finished(http, http.post(f"/jobs/{job_id}/mlflow", json=body).headers["location"])
    with db.session(readonly=True) as session:
        stored = {
            solution_id: labels
            for solution_id, labels in session.execute(
                select(Solution.id, Solution.predictions).where(Solution.job_id == job_id)
            )
        }
    result = handoff["result"]
    assert sorted(map(int, result["runs"])) == sorted(stored) == handoff["request"]["ids"]
    assert (result["created_runs"], result["created_versions"]) == (1 + len(stored), len(stored))
    assert again["state"] == "finished"
    assert (again["result"]["created_runs"], again["result"]["created_versions"]) == (0, 0)
    assert again["result"]["runs"] == result["runs"]

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("http").experiment_id
    assert len(client.search_runs([experiment])) == 1 + len(stored)
    versions = client.search_model_versions("name = 'tiny'")
    assert len(versions) == len(stored)
    inputs = load(PROBLEM).splits["test"][0]
    mlflow.set_tracking_uri(tracking)
    try:
        for solution_id, run_id in result["runs"].items():
            run = client.get_run(run_id)
            assert run.data.params["weights_sha256"] in {v.tags["weights_sha256"] for v in versions}
            model = mlflow.pytorch.load_model(run.data.tags["ridgerider_model_uri"])
            with torch.no_grad():
                predicted = class_probabilities(model(inputs)).argmax(1).numpy()
            assert np.array_equal(predicted, np.frombuffer(stored[int(solution_id)], np.int16))
    finally:
        mlflow.set_tracking_uri(None)


def test_another_key_sees_no_hand_off_and_bad_requests_name_the_field(served):
    server, _, job_id, _ = served
    with server.client() as alice, server.client("bob") as bob:
        made = alice.post(f"/jobs/{job_id}/mlflow", json={"diverse": 2})
        assert made.status_code == 202, made.text
        location = made.headers["location"]
        assert bob.get(location).status_code == 404
        assert bob.post(f"/jobs/{job_id}/mlflow", json={}).status_code == 404
        bad_name = alice.post(f"/jobs/{job_id}/mlflow", json={"registered_model": "a/b"})
        assert bad_name.status_code == 422
        assert bad_name.json()["errors"][0]["field"] == "registered_model"
        both = alice.post(
            f"/jobs/{job_id}/mlflow", json={"diverse": 2, "pareto": [{"name": "loss"}]}
        )
        assert both.status_code == 422
        bad_filter = alice.post(f"/jobs/{job_id}/mlflow", json={"filter": "loss >"})
        assert bad_filter.status_code == 422
        assert finished(alice, location)["state"] == "finished"


def test_a_server_without_a_tracking_uri_says_how_to_set_one(served, tmp_path):
    server, _, job_id, db = served
    settings = load_settings(broker_url="redis://127.0.0.1:1/0")  # a hand-off enqueues nothing
    app = create_app(Services(settings, db, LocalArtifactStore(tmp_path), Pool(settings)))
    key = server.keys["alice"]
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as http:
        response = http.post(f"/jobs/{job_id}/mlflow", json={})
    assert response.status_code == 503
    assert "--mlflow-tracking-uri" in response.json()["detail"]
