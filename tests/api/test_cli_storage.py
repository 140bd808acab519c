"""The stored-results commands as real processes against the embedded database: jobs,
solutions (filter, sort, formats), select, export, db upgrade, and their errors."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import tarfile
import time

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import text

from storage.database import Database
from storage.keys import key_digest, owner_of_digest
from storage.schema import VERSION_TABLE, head_revision
from tests.api.test_cli import RIDGERIDER, ridgerider
from tests.conftest import REPOSITORY
from tests.workers.pool import free_port


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder whose embedded database holds job 1: the tiny net, searched to the end."""
    path = tmp_path_factory.mktemp("cli")
    (path / "spec.toml").write_text("max_nodes = 30\nmax_depth = 4\n")
    result = ridgerider(
        "run", "--problem", "tests.problems:tiny_net", "--spec", "spec.toml", cwd=path
    )
    assert result.returncode == 0, result.stderr
    return path


def cli(folder, *args):
    result = ridgerider(*args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_solutions_in_every_format_agree(folder):
    rows = json.loads(cli(folder, "solutions", "1", "--format", "json"))["solutions"]
    status = json.loads(cli(folder, "status", "1", "--format", "json"))
    assert len(rows) == status["progress"]["solutions"] >= 2
    assert all(r["metrics"]["grad_norm"] < 1e-6 for r in rows)
    assert rows[0]["fingerprint"] and all(
        r["depth"] == r["fingerprint"].count(".") + 1 for r in rows
    )
    table = list(csv.DictReader(io.StringIO(cli(folder, "solutions", "1", "--format", "csv"))))
    assert [int(r["id"]) for r in table] == [r["id"] for r in rows]
    assert float(table[0]["test_accuracy"]) == rows[0]["metrics"]["test_accuracy"]
    assert "solutions of job 1" in cli(folder, "solutions", "1")


def test_solutions_filter_sort_and_page(folder):
    ordered = json.loads(
        cli(folder, "solutions", "1", "--sort", "-test_accuracy", "--format", "json")
    )
    accuracies = [r["metrics"]["test_accuracy"] for r in ordered["solutions"]]
    assert accuracies == sorted(accuracies, reverse=True)
    best = accuracies[0]
    passing = json.loads(
        cli(folder, "solutions", "1", "--filter", f"test_accuracy >= {best}", "--format", "json")
    )["solutions"]
    assert passing and all(r["metrics"]["test_accuracy"] == best for r in passing)
    pages = [json.loads(cli(folder, "solutions", "1", "--limit", "3", "--format", "json"))]
    while pages[-1]["next_cursor"] is not None:
        cursor = pages[-1]["next_cursor"]
        more = cli(folder, "solutions", "1", "--limit", "3", "--cursor", cursor, "--format", "json")
        pages.append(json.loads(more))
    ids = [r["id"] for page in pages for r in page["solutions"]]
    solutions = json.loads(cli(folder, "status", "1", "--format", "json"))["progress"]["solutions"]
    assert len(pages) > 1 and ids == list(range(1, solutions + 1))


def test_bad_queries_exit_2_and_point_at_the_problem(folder):
    result = ridgerider("solutions", "1", "--filter", "test_acuracy > 0.9", cwd=folder)
    assert result.returncode == 2
    assert "unknown metric 'test_acuracy'" in result.stderr
    assert "  test_acuracy > 0.9\n  ^" in result.stderr
    result = ridgerider("solutions", "1", "--sort", "speed", cwd=folder)
    assert result.returncode == 2 and "sort: unknown metric 'speed'" in result.stderr
    result = ridgerider("solutions", "99", cwd=folder)
    assert result.returncode == 2 and "no job 99" in result.stderr
    result = ridgerider("select", "1", "--pareto", "loss:down", cwd=folder)
    assert result.returncode == 2 and "direction must be max or min" in result.stderr


def test_select_pareto_and_diverse_with_ensemble_metrics(folder):
    pareto = json.loads(
        cli(
            folder, "select", "1", "--pareto", "test_accuracy:max,sharpness:min", "--format", "json"
        )
    )
    assert "Pareto front over test_accuracy (max), sharpness (min)" in pareto["selection"]
    assert pareto["solutions"] and pareto["set_metrics"]["solutions"] == len(pareto["solutions"])
    diverse = json.loads(cli(folder, "select", "1", "--diverse", "2", "--format", "json"))
    assert len(diverse["solutions"]) == 2
    assert diverse["set_metrics"]["mean_disagreement"] > 0  # two functionally different models
    assert "ensemble test accuracy" in cli(folder, "select", "1", "--diverse", "2")


def test_a_repeated_pareto_objective_counts_once(folder):
    once = json.loads(cli(folder, "select", "1", "--pareto", "loss:min", "--format", "json"))
    twice = cli(folder, "select", "1", "--pareto", "loss:min,loss:min", "--format", "json")
    assert once["solutions"] and json.loads(twice) == once
    result = ridgerider("select", "1", "--pareto", "loss:min,loss:max", cwd=folder)
    assert result.returncode == 2 and "'loss' is given as both max and min" in result.stderr


def test_export_folder_and_archive(folder):
    out = cli(folder, "export", "1", "exported", "--diverse", "2")
    assert "exported 2 solutions of job 1" in out
    card = (folder / "exported" / "MODEL_CARD.md").read_text()
    assert "most mutually disagreeing" in card
    cli(folder, "export", "1", "exported.tar.gz")
    with tarfile.open(folder / "exported.tar.gz") as archive:
        names = archive.getnames()
    assert "exported/MODEL_CARD.md" in names and "exported/weights/SHA256SUMS" in names
    status = json.loads(cli(folder, "status", "1", "--format", "json"))
    weights = sum(n.startswith("exported/weights/solution-") for n in names)
    assert weights == status["progress"]["solutions"]
    again = ridgerider("export", "1", "exported", cwd=folder)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def test_db_upgrade_and_an_outdated_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    head = head_revision()
    assert f"schema empty -> {head}" in cli(tmp_path, "db", "upgrade", "--db", url)
    assert f"schema {head} -> {head}" in cli(tmp_path, "db", "upgrade", "--db", url)
    with Database(url).engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0000'"))
    result = ridgerider("jobs", "--db", url, cwd=tmp_path)
    assert result.returncode == 2
    assert f"run `ridgerider db upgrade --db {url}`" in result.stderr


def test_serve_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    result = ridgerider("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in result.stderr
    assert ridgerider("keys", "create", "carol", cwd=tmp_path).stdout.startswith("rr_")
    again = ridgerider("keys", "create", "carol", cwd=tmp_path)
    assert again.returncode == 2 and "key name 'carol' is taken" in again.stderr


def test_keys_are_listed_without_the_key_revoked_and_made_again(tmp_path):
    first = ridgerider("keys", "create", "dave", cwd=tmp_path).stdout.strip()
    listed = ridgerider("keys", "list", cwd=tmp_path).stdout
    assert "dave" in listed and first[:8] in listed and first not in listed
    revoked = ridgerider("keys", "revoke", "dave", cwd=tmp_path)
    assert revoked.returncode == 0 and "servers refuse it within 10 s" in revoked.stderr
    assert "True" in ridgerider("keys", "list", cwd=tmp_path).stdout
    again = ridgerider("keys", "revoke", "dave", cwd=tmp_path)
    assert again.returncode == 2 and "no valid key named 'dave'" in again.stderr
    second = ridgerider("keys", "create", "dave", cwd=tmp_path).stdout.strip()
    assert second.startswith("rr_") and second != first
    with Database(tmp_path / "ridgerider.db").session(readonly=True) as session:
        assert owner_of_digest(session, key_digest(second)) == "dave"
        assert owner_of_digest(session, key_digest(first)) is None


def test_serve_with_several_workers_starts_each_and_answers(tmp_path):
    key = ridgerider("keys", "create", "erin", cwd=tmp_path).stdout.strip()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(RIDGERIDER), "serve", "--port", str(port), "--workers", "2", "--threads", "3"],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            answers = [http.get("/problems") for _ in range(20)]
        assert all(answer.status_code == 200 for answer in answers)
        assert "himmelblau" in {problem["name"] for problem in answers[0].json()}
        assert len(set(re.findall(r"Started server process \[(\d+)\]", log.read_text()))) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_mlflow_hands_off_a_selection_once(folder):
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    args = ("mlflow", "1", "--tracking-uri", uri, "--experiment", "cli", "--diverse", "2")
    first = cli(folder, *args, "--register", "tiny-net")
    assert "3 runs and 2 model versions added" in " ".join(first.split())
    second = cli(folder, *args, "--register", "tiny-net")
    assert "nothing new" in " ".join(second.split())
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cli").experiment_id
    assert len(client.search_runs([experiment])) == 3
    assert len(client.search_model_versions("name = 'tiny-net'")) == 2


def test_mlflow_errors_exit_2_naming_the_fix(folder):
    bad_name = ridgerider("mlflow", "1", "--register", "a/b", cwd=folder)
    assert bad_name.returncode == 2
    assert "--register must be 1 to 200 letters, digits, _ or -" in bad_name.stderr
    without = subprocess.run(  # a Python where `import mlflow` fails, as where it is absent
        [
            str(RIDGERIDER.with_name("python")),
            "-c",
            "import sys; sys.modules['mlflow'] = None; from api.cli import app; app()",
            "mlflow",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY), "COLUMNS": "200"},
        timeout=300,
    )
    assert without.returncode == 2, without.stderr
    assert "pip install 'ridgerider[mlflow]'" in without.stderr
