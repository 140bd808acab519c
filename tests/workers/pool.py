"""A real worker pool for tests: a `redis-server` of its own on a free port, `ridgerider worker`
processes (Celery, prefork), and a PostgreSQL database created for it and dropped after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from storage.database import Database
from storage.schema import ensure_schema
from tests.api.test_cli import RIDGERIDER
from tests.conftest import REPOSITORY, postgres_database

READY_TIMEOUT = 90
SETTINGS = {  # short timeouts, so that recovery shows within a test
    "RIDGERIDER_STALE_AFTER": "4",
    "RIDGERIDER_REQUEUE_AFTER": "3",
    "RIDGERIDER_SWEEP_EVERY": "1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Return once `url` answers 200; raise with the process's `log` if it exits or `timeout`
    seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.2)


def redis_server(
    port: int,
    popen: Callable[[list[str]], subprocess.Popen] = lambda args: subprocess.Popen(
        args, stdout=subprocess.DEVNULL
    ),
) -> subprocess.Popen:
    """A fresh, empty redis-server (no persistence) on `port`, started by `popen` (by default
    with its output discarded), answering when this returns. Kill it and call this again for a
    new one on the same port."""
    persistence = ("--save", "", "--appendonly", "no")
    process = popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", *persistence])
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return process
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@dataclass
class Pool:
    folder: Path
    db_url: str
    port: int
    redis: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # more RIDGERIDER_* variables

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPOSITORY),
            "RIDGERIDER_DATABASE_URL": self.db_url,
            "RIDGERIDER_BROKER_URL": self.broker_url,
            "RIDGERIDER_ARTIFACTS": str(self.folder / "artifacts"),
            "COLUMNS": "120",
            **SETTINGS,
            **self.settings,
        }

    def start_redis(self) -> None:
        """A fresh, empty redis-server on the pool's port."""
        self.redis = redis_server(self.port)

    def stop_redis(self) -> None:
        self.redis.kill()
        self.redis.wait()

    def start_worker(self, queues: str | None = None) -> subprocess.Popen:
        """A `ridgerider worker` with one pool process (taking tasks from `queues`, where
        given); returns once it is ready."""
        name = f"w{len(self.workers)}"
        log = (self.folder / f"{name}.log").open("w")
        taken = [] if queues is None else ["--queues", queues]
        worker = subprocess.Popen(
            [str(RIDGERIDER), "worker", "--concurrency", "1", "--hostname", f"{name}@%h", *taken],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill it with its pool
        )
        self.workers.append(worker)
        deadline = time.monotonic() + READY_TIMEOUT
        while " ready." not in self.log(name):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{self.log(name)}")
            time.sleep(0.2)
        return worker

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(self.log(f"w{i}") for i in range(len(self.workers)))

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RIDGERIDER), *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        if self.redis is not None and self.redis.poll() is None:
            self.stop_redis()


@contextmanager
def pool(
    folder: Path, workers: int = 2, settings: dict[str, str] | None = None
) -> Iterator[tuple[Pool, Database]]:
    """A running pool (its environment with `settings` added) on a new PostgreSQL database;
    everything is stopped and dropped after."""
    with postgres_database() as url:
        db = Database(url)
        ensure_schema(db)
        running = Pool(folder, url, free_port(), settings=settings or {})
        try:
            running.start_redis()
            for _ in range(workers):
                running.start_worker()
            yield running, db
        finally:
            running.close()
            db.dispose()
