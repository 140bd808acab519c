"""MLflow tracking stores for tests: a local SQLite store with a local artifact root, and a
real `mlflow server` process over one on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.workers.pool import free_port, wait_until_healthy

EXPERIMENT = "ridgerider-test"
READY_TIMEOUT = 120


def sqlite_store(folder: Path) -> str:
    """The tracking URI of a new SQLite store in `folder`, with the test experiment's artifacts
    under `folder` too (not in the working directory)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(
        EXPERIMENT, artifact_location=(folder / "mlartifacts").as_uri()
    )
    return uri


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` on a free loopback port over a SQLite store in `folder`, serving (and
    proxying) the artifacts it keeps in `folder`; its URL. Stopped after."""
    port = free_port()
    log = (folder / "mlflow-server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", server, folder / "mlflow-server.log", READY_TIMEOUT)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
