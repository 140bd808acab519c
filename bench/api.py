"""Benchmark: the HTTP API under load, from a second process over loopback.

A `ridgerider serve` (uvicorn, one process) on PostgreSQL with 10,000 stored solutions of 20
metrics in one job, and a Redis of its own; this process is the load: 1 or 32 clients (threads,
one keep-alive connection each), each sending its next request when the last one answered, for
`--seconds` per row. Rows: a filtered, sorted solutions page; job status; submissions.

Target: p99 under 100 ms at 32 clients for a page. Run: `python bench/api.py` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.models import Job
from tests.api.server import serve
from tests.storage.synthetic import synthetic_job
from tests.workers.pool import pool

FILTER = "test_accuracy > 0.3 and sharpness < 80"


def load(
    url: str, key: str, clients: int, seconds: float, request: Callable[[httpx.Client], int]
) -> tuple[list[float], int]:
    """Latencies (ms) of every request `clients` threads made in `seconds`, and the count of
    responses that were not the expected status."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        mine, bad = [], 0
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                ok = request(http)
                mine.append((time.perf_counter() - started) * 1000)
                bad += not ok
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory() as folder,
        pool(Path(folder), workers=0) as (running, db),
        serve(running, ("bench",)) as server,
    ):
        job_id, _ = synthetic_job(db, args.solutions)
        with db.session() as session:
            session.get(Job, job_id).owner = "bench"
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        key = server.keys["bench"]

        def page(http: httpx.Client) -> bool:
            params = {"filter": FILTER, "sort": "-test_accuracy", "limit": 50}
            return http.get(f"/jobs/{job_id}/solutions", params=params).status_code == 200

        def status(http: httpx.Client) -> bool:
            return http.get(f"/jobs/{job_id}").status_code == 200

        def submission(http: httpx.Client) -> bool:
            spec = {"problem": "himmelblau", "max_nodes": 5}
            return http.post("/jobs", json=spec).status_code == 202

        for name, request in (
            ("solutions page", page),
            ("job status", status),
            ("submission", submission),
        ):
            for clients in (1, 32):
                latencies, failed = load(server.url, key, clients, args.seconds, request)
                rows.append(
                    (
                        name,
                        clients,
                        len(latencies) / args.seconds,
                        np.percentile(latencies, 50),
                        np.percentile(latencies, 99),
                        failed,
                    )
                )
                print(f"{name}, {clients} clients: done", file=sys.stderr)
    print(
        f"\n{args.solutions:,} solutions x 20 metrics on PostgreSQL; page: filter `{FILTER}`, "
        f"sort -test_accuracy, 50 rows; {args.seconds:.0f} s a row; one uvicorn process\n"
    )
    print("| request | clients | requests/s | p50 ms | p99 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, clients, rate, p50, p99, failed in rows:
        print(f"| {name} | {clients} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {failed} |")


if __name__ == "__main__":
    main()
