"""A real `ridgerider serve` (uvicorn on a free port) over a real pool, for HTTP tests; and any
serving command (`serve`, `dashboard`) over a folder's embedded database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.api.test_cli import RIDGERIDER
from tests.conftest import REPOSITORY
from tests.workers.pool import Pool, free_port, wait_until_healthy


@dataclass
class Server:
    url: str
    keys: dict[str, str]

    def client(self, who: str | None = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def serve(
    pool: Pool,
    owners: tuple[str, ...] = ("alice", "bob"),
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Keys for `owners`, then the API on a free port (`args` go to `ridgerider serve`, `env`
    to its environment); stopped after."""
    keys = {}
    for owner in owners:
        made = pool.cli("keys", "create", owner)
        assert made.returncode == 0, made.stderr
        keys[owner] = made.stdout.strip()
    port = free_port()
    log = (pool.folder / "serve.log").open("w")
    process = subprocess.Popen(
        [str(RIDGERIDER), "serve", "--port", str(port), *args],
        env={**pool.env, **(env or {})},
        cwd=pool.folder,  # what a server writes to a relative path lands in the test's folder
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/healthz", process, pool.folder / "serve.log", 60)
    try:
        yield Server(url, keys)
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def serving(folder: Path, command: str) -> Iterator[tuple[str, Path]]:
    """`ridgerider COMMAND --port P` in `folder` (its embedded database), answering on a free
    port: its URL and the file its output goes to; stopped after."""
    port = free_port()
    log = folder / f"{command}.out"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(RIDGERIDER), command, "--port", str(port)],
            cwd=folder,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/healthz", process, log, 60)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=20)
