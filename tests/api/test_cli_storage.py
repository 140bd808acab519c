"""The stored-results commands as real processes: status, cancel, solutions (filter, sort,
formats), select and export run as one suite against both backends, the embedded database and
a `ridgerider serve` over it (`--server`); db upgrade, keys, serve and mlflow; and their errors."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import text

from storage.database import Database
from storage.keys import key_digest, owner_of_digest
from storage.schema import VERSION_TABLE, head_revision
from tests.api.server import serving
from tests.api.test_cli import RIDGERIDER, cli_environment, ridgerider
from tests.conftest import REPOSITORY
from tests.workers.pool import free_port


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder whose embedded database holds job 1: a three-class net, within a node
    budget."""
    path = tmp_path_factory.mktemp("cli")
    (path / "spec.toml").write_text("max_nodes = 24\nmax_depth = 4\n")
    result = ridgerider(
        "run", "--problem", "tests.problems:three_class_net", "--spec", "spec.toml", cwd=path
    )
    assert result.returncode == 0, result.stderr
    return path


@dataclass(frozen=True)
class Backend:
    """Where the commands act: the folder's database, or a server over it (`args`)."""

    name: str
    folder: Path
    args: tuple[str, ...] = ()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ridgerider(*args, *self.args, cwd=self.folder)


@pytest.fixture(scope="module", params=["local", "remote"])
def backend(request, folder):
    """Each command suite's backend: the embedded database, then a real server over it."""
    if request.param == "local":
        yield Backend("local", folder)
        return
    key = ridgerider("keys", "create", "alice", cwd=folder).stdout.strip()
    database = Database(folder / "ridgerider.db")
    with database.engine.begin() as connection:  # a local run's job has no owner: give it one
        connection.execute(text("UPDATE jobs SET owner = 'alice' WHERE id = 1"))
    database.dispose()
    with serving(folder, "serve") as (url, _):
        yield Backend("remote", folder, ("--server", url, "--key", key))


def cli(where, *args):
    run = where.run if isinstance(where, Backend) else partial(ridgerider, cwd=where)
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_solutions_in_every_format_agree(backend):
    rows = json.loads(cli(backend, "solutions", "1", "--format", "json"))["solutions"]
    status = json.loads(cli(backend, "status", "1", "--format", "json"))
    assert len(rows) == status["progress"]["solutions"] >= 2
    assert all(r["metrics"]["grad_norm"] < 1e-6 for r in rows)
    assert rows[0]["fingerprint"] and all(
        r["depth"] == r["fingerprint"].count(".") + 1 for r in rows
    )
    table = list(csv.DictReader(io.StringIO(cli(backend, "solutions", "1", "--format", "csv"))))
    assert [int(r["id"]) for r in table] == [r["id"] for r in rows]
    assert float(table[0]["test_accuracy"]) == rows[0]["metrics"]["test_accuracy"]
    assert "solutions of job 1" in cli(backend, "solutions", "1")


def test_solutions_filter_sort_and_page(backend):
    ordered = json.loads(
        cli(backend, "solutions", "1", "--sort", "-test_accuracy", "--format", "json")
    )
    accuracies = [r["metrics"]["test_accuracy"] for r in ordered["solutions"]]
    assert accuracies == sorted(accuracies, reverse=True)
    best = accuracies[0]
    passing = json.loads(
        cli(backend, "solutions", "1", "--filter", f"test_accuracy >= {best}", "--format", "json")
    )["solutions"]
    assert passing and all(r["metrics"]["test_accuracy"] == best for r in passing)
    pages = [json.loads(cli(backend, "solutions", "1", "--limit", "3", "--format", "json"))]
    while pages[-1]["next_cursor"] is not None:
        cursor = pages[-1]["next_cursor"]
        more = cli(
            backend, "solutions", "1", "--limit", "3", "--cursor", cursor, "--format", "json"
        )
        pages.append(json.loads(more))
    ids = [r["id"] for page in pages for r in page["solutions"]]
    solutions = json.loads(cli(backend, "status", "1", "--format", "json"))["progress"]["solutions"]
    assert len(pages) > 1 and ids == list(range(1, solutions + 1))
    first = backend.run("solutions", "1", "--limit", "3", "--format", "csv")
    cursor = re.fullmatch(r"more: --cursor (\S+)\n", first.stderr)
    assert first.returncode == 0 and cursor, first.stderr
    second = cli(
        backend, "solutions", "1", "--limit", "3", "--cursor", cursor[1], "--format", "csv"
    )
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(second))] == ids[3:6]


def test_commands_without_rows_refuse_csv(backend):
    jobs = ridgerider("jobs", "--format", "csv", cwd=backend.folder)
    status = backend.run("status", "1", "--format", "csv")
    for result in (jobs, status):
        assert result.returncode == 2 and "'csv' is not one of" in result.stderr


def test_bad_queries_exit_2_and_point_at_the_problem(backend):
    result = backend.run("solutions", "1", "--filter", "test_acuracy > 0.9")
    assert result.returncode == 2
    assert "unknown metric 'test_acuracy'" in result.stderr
    assert "  test_acuracy > 0.9\n  ^" in result.stderr
    result = backend.run("solutions", "1", "--sort", "speed")
    assert result.returncode == 2 and "sort: unknown metric 'speed'" in result.stderr
    result = backend.run("solutions", "99")
    assert result.returncode == 2 and "no job 99" in result.stderr
    result = backend.run("select", "1", "--pareto", "loss:down")
    assert result.returncode == 2 and "direction must be max or min" in result.stderr


def test_select_pareto_and_diverse_with_ensemble_metrics(backend):
    """Locally with the set's ensemble metrics; a server evaluates no model in a request."""
    pareto = json.loads(
        cli(
            backend,
            "select",
            "1",
            "--pareto",
            "test_accuracy:max,sharpness:min",
            "--format",
            "json",
        )
    )
    assert "Pareto front over test_accuracy (max), sharpness (min)" in pareto["selection"]
    diverse = json.loads(cli(backend, "select", "1", "--diverse", "2", "--format", "json"))
    assert len(diverse["solutions"]) == 2
    assert pareto["solutions"]
    if backend.name == "remote":
        assert pareto["set_metrics"] is None and diverse["set_metrics"] is None
        return
    assert pareto["set_metrics"]["solutions"] == len(pareto["solutions"])
    assert diverse["set_metrics"]["mean_disagreement"] > 0  # two functionally different models
    assert "ensemble test accuracy" in cli(backend, "select", "1", "--diverse", "2")


def test_a_repeated_pareto_objective_counts_once(backend):
    once = json.loads(cli(backend, "select", "1", "--pareto", "loss:min", "--format", "json"))
    twice = cli(backend, "select", "1", "--pareto", "loss:min,loss:min", "--format", "json")
    assert once["solutions"] and json.loads(twice) == once
    result = backend.run("select", "1", "--pareto", "loss:min,loss:max")
    assert result.returncode == 2 and "'loss' is given as both max and min" in result.stderr


def test_export_folder_and_archive(backend):
    exported = f"exported-{backend.name}"
    out = cli(backend, "export", "1", exported, "--diverse", "2")
    assert f"exported 2 solutions of job 1 to {exported}" in out
    card = (backend.folder / exported / "MODEL_CARD.md").read_text()
    assert "most mutually disagreeing" in card
    cli(backend, "export", "1", f"{exported}.tar.gz")
    with tarfile.open(backend.folder / f"{exported}.tar.gz") as archive:
        names = archive.getnames()
    top = names[0].split("/")[0]  # the folder's name locally, the server's otherwise
    assert f"{top}/MODEL_CARD.md" in names and f"{top}/weights/SHA256SUMS" in names
    status = json.loads(cli(backend, "status", "1", "--format", "json"))
    weights = sum(n.startswith(f"{top}/weights/solution-") for n in names)
    assert weights == status["progress"]["solutions"]
    again = backend.run("export", "1", exported)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr


def test_cancelling_a_finished_job_keeps_what_it_found(backend):
    before = json.loads(cli(backend, "status", "1", "--format", "json"))
    assert "job 1 is finished: there is nothing to cancel" in cli(backend, "cancel", "1")
    after = json.loads(cli(backend, "status", "1", "--format", "json"))
    assert after["status"] == before["status"] == "finished"
    assert after["progress"] == before["progress"]
    missing = backend.run("cancel", "99")
    assert missing.returncode == 2 and "no job 99" in missing.stderr


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
        env=cli_environment({"COLUMNS": "200"}),
        timeout=300,
    )
    assert without.returncode == 2, without.stderr
    assert "pip install 'ridgerider[mlflow]'" in without.stderr


def test_the_local_key_name_is_reserved_for_the_dashboard(tmp_path):
    result = ridgerider("keys", "create", "local", cwd=tmp_path)
    assert result.returncode == 2 and "'local' is reserved" in result.stderr


def test_a_database_and_a_server_together_are_refused(tmp_path):
    result = ridgerider(
        "status", "1", "--db", "x.db", "--server", "http://127.0.0.1:1", "--key", "k", cwd=tmp_path
    )
    assert result.returncode == 2 and "--db and --server" in result.stderr


def test_the_commands_that_read_stored_results_start_without_the_engine(folder):
    """`jobs`, `status`, `solutions` and `keys list` run in one process that then holds none of
    torch, scipy, Celery, FastAPI or MLflow: each such call starts seconds sooner."""
    script = (
        "import sys\n"
        "from api.cli import app\n"
        "for args in (['jobs'], ['status', '1'], ['solutions', '1'], ['keys', 'list']):\n"
        "    app(args, standalone_mode=False)\n"
        "heavy = ('torch', 'scipy', 'celery', 'fastapi', 'mlflow')\n"
        "print('loaded:', sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=folder,
        env=cli_environment(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "│" in result.stdout  # the commands printed their tables
    assert result.stdout.rstrip().endswith("loaded: []")
