"""The hand-off to a real MLflow tracking store (SQLite, local artifact root), on both of our
database engines: read back through MLflow's own client, every number equals the stored one,
each model loads and predicts the stored predictions, registered versions carry the sha256 of
the weights, and a second hand-off adds nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from ridgerider.problems.base import class_probabilities
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec
from storage.jobs import create_job
from storage.models import Solution
from storage.queries import solution_rows
from tests.workers.mlflow_store import EXPERIMENT, sqlite_store
from workers.local import run_job
from workers.mlflow_handoff import hand_off

PROBLEM = "tests.problems:three_class_net"
REGISTERED = "three-class-net"


@pytest.fixture(autouse=True)
def default_tracking_uri():
    """Tests set MLflow's global tracking URI to load models; it is put back after each."""
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture
def job(db, store) -> tuple[int, list[int]]:
    """A finished three-class-net job with several solutions; its id and its solutions' ids."""
    with db.session() as session:
        spec = SearchSpec(problem=PROBLEM, max_nodes=30, max_depth=4)
        job_id = create_job(session, spec.model_dump()).id
    run_job(db, store, job_id)
    with db.session(readonly=True) as session:
        ids = list(session.scalars(select(Solution.id).where(Solution.job_id == job_id)))
    assert len(ids) >= 3
    return job_id, ids


def runs_of(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], max_results=1000)


def test_a_hand_off_reads_back_exactly_and_a_second_adds_nothing(db, store, job, tmp_path):
    job_id, ids = job
    uri = sqlite_store(tmp_path)
    client = MlflowClient(uri)
    chosen = ids[:3]

    def hand_off_three():
        return hand_off(
            db,
            store,
            job_id,
            chosen,
            "three",
            tracking_uri=uri,
            experiment=EXPERIMENT,
            register=REGISTERED,
        )

    result = hand_off_three()
    assert (result.created_runs, result.created_versions) == (4, 3)

    runs = runs_of(client, result.experiment_id)
    assert len(runs) == 1 + len(chosen)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.params["problem"] == PROBLEM
    assert parent.data.params["max_nodes"] == "30"
    assert parent.data.tags["ridgerider_job_id"] == str(job_id)
    assert "ridgerider_version" in parent.data.tags
    assert parent.data.metrics["solutions"] == len(chosen)
    logged = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"MODEL_CARD.md", "lineage.graphml", "lineage.json", "plots"} <= logged
    plots = {a.path for a in client.list_artifacts(result.parent_run_id, "plots")}
    assert "plots/ride_tree.png" in plots

    problem = load(PROBLEM)
    inputs = problem.splits["test"][0]
    with db.session(readonly=True) as session:
        rows = {row.id: row for row in solution_rows(session, chosen)}
        query = select(Solution.id, Solution.predictions).where(Solution.id.in_(chosen))
        stored = {solution_id: labels for solution_id, labels in session.execute(query)}
    versions = {
        v.tags["ridgerider_solution_id"]: v
        for v in client.search_model_versions(f"name = '{REGISTERED}'")
    }
    assert sorted(versions) == sorted(map(str, chosen))
    mlflow.set_tracking_uri(uri)  # where load_model looks; the hand-off left it as it was
    for solution_id, run_id in result.runs.items():
        run = client.get_run(run_id)
        row = rows[solution_id]
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.data.metrics == row.metrics  # every metric, exactly
        assert run.data.params["fingerprint"] == (row.fingerprint or "(start)")
        assert run.data.params["depth"] == str(row.depth)

        model = mlflow.pytorch.load_model(run.data.tags["ridgerider_model_uri"])
        with torch.no_grad():
            predicted = class_probabilities(model(inputs)).argmax(1).numpy()
        assert np.array_equal(predicted, np.frombuffer(stored[solution_id], np.int16))

        weights = Path(store.path(row.weights_sha256)).read_bytes()
        assert versions[str(solution_id)].tags["weights_sha256"] == row.weights_sha256
        assert hashlib.sha256(weights).hexdigest() == row.weights_sha256
        copy = Path(client.download_artifacts(run_id, "weights", str(tmp_path / str(run_id))))
        assert hashlib.sha256(next(copy.iterdir()).read_bytes()).hexdigest() == row.weights_sha256

    models_before = len(client.search_logged_models([result.experiment_id]))
    again = hand_off_three()
    assert (again.created_runs, again.created_versions) == (0, 0)
    assert (again.parent_run_id, again.runs, again.versions) == (
        result.parent_run_id,
        result.runs,
        result.versions,
    )
    assert len(runs_of(client, result.experiment_id)) == 1 + len(chosen)
    assert len(client.search_model_versions(f"name = '{REGISTERED}'")) == len(chosen)
    assert len(client.search_logged_models([result.experiment_id])) == models_before

    other = hand_off(db, store, job_id, ids[:1], "one", tracking_uri=uri, experiment=EXPERIMENT)
    assert other.parent_run_id != result.parent_run_id  # another selection: runs of its own
    assert other.created_runs == 2


def test_an_id_that_is_no_solution_of_the_job_is_refused_before_anything_is_logged(
    db, store, job, tmp_path
):
    job_id, ids = job
    uri = sqlite_store(tmp_path)
    with pytest.raises(LookupError, match=rf"solutions \[{max(ids) + 1}\] are not in job"):
        hand_off(
            db, store, job_id, [*ids, max(ids) + 1], "all", tracking_uri=uri, experiment=EXPERIMENT
        )
    client = MlflowClient(uri)
    assert client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]) == []
