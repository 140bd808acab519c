"""Benchmark: the HTTP API under load, from a second process over loopback.

A `ridgerider serve --workers 2 --threads 2` (uvicorn) on PostgreSQL with 10,000 stored
solutions of 20 metrics in one job, and a Redis of its own. This process is the load: 1 or 32
clients, each on one keep-alive connection, sending its next request when the last one answered
(closed loop), written with asyncio streams so that the load costs little of the CPU the server
needs (the two share this machine's cores). Each row runs 2 s unmeasured (connections, prepared
statements), then `--seconds` measured.

Rows:
- a solutions page (filter + sort, 50 rows), the same request each time: after the first, the
  page comes from the server's page cache (valid until the job records something);
- a solutions page whose filter differs in every request, so none is ever cached;
- job status; submissions (each a new job sent to the broker; no worker runs them);
- the peer: `solutions_page` called in this process, no HTTP (what the query itself costs).

Target: p99 under 100 ms at 32 clients for a page. Run: `python bench/api.py` (about 2
minutes; needs PostgreSQL at RIDGERIDER_TEST_POSTGRES or postgres@127.0.0.1:5432, and
`redis-server` on the PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np
from common import p50_p99, print_table

from storage.models import Job
from storage.queries import solutions_page
from storage.synthetic import synthetic_job
from tests.api.server import serve
from tests.workers.pool import pool

FILTER = "test_accuracy > 0.3 and sharpness < {}"
SORT = "-test_accuracy"
WARMUP_SECONDS = 2.0
# The benchmark measures throughput: its one key may submit without the per-key quotas.
UNLIMITED = {"RIDGERIDER_SUBMISSIONS_PER_MINUTE": "100000", "RIDGERIDER_MAX_ACTIVE_JOBS": "100000"}


def http_request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def client(
    port: int,
    next_request: Callable[[], bytes],
    expected: int,
    measure_from: float,
    stop: float,
    latencies: list[float],
) -> int:
    """Requests one after another on one connection until `stop`; the count of unexpected
    statuses. Latencies of requests sent after `measure_from` are appended (ms)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    unexpected = 0
    try:
        while (sent := time.monotonic()) < stop:
            started = time.perf_counter()
            writer.write(next_request())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if sent >= measure_from:
                latencies.append((time.perf_counter() - started) * 1000)
                unexpected += int(head[9:12]) != expected
    finally:
        writer.close()
    return unexpected


async def load(
    port: int, clients: int, seconds: float, next_request: Callable[[], bytes], expected: int
) -> tuple[list[float], int]:
    """Latencies (ms) of the measured requests of `clients` closed-loop clients, and the count
    of responses without the `expected` status."""
    latencies: list[float] = []
    measure_from = time.monotonic() + WARMUP_SECONDS
    stop = measure_from + seconds
    unexpected = await asyncio.gather(
        *(
            client(port, next_request, expected, measure_from, stop, latencies)
            for _ in range(clients)
        )
    )
    return latencies, sum(unexpected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per server process")
    args = parser.parse_args()
    rows = []
    server_args = ("--workers", str(args.workers), "--threads", str(args.threads))
    with (
        tempfile.TemporaryDirectory() as folder,
        pool(Path(folder), workers=0) as (running, db),
        serve(running, ("bench",), server_args, env=UNLIMITED) as server,
    ):
        job_id, _ = synthetic_job(db, args.solutions)
        with db.session() as session:
            session.get(Job, job_id).owner = "bench"
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        key = server.keys["bench"]
        port = int(server.url.rsplit(":", 1)[1])
        unique = itertools.count()

        def page(threshold: str) -> bytes:
            query = f"filter={quote(FILTER.format(threshold))}&sort={SORT}&limit=50"
            return http_request("GET", f"/jobs/{job_id}/solutions?{query}", key)

        same_page = page("80")
        status = http_request("GET", f"/jobs/{job_id}", key)
        submission = json.dumps({"problem": "himmelblau", "max_nodes": 5}).encode()
        requests: list[tuple[str, Callable[[], bytes], int]] = [
            ("solutions page, the same each time (cached)", lambda: same_page, 200),
            ("solutions page, a new filter each time", lambda: page(f"80.{next(unique)}"), 200),
            ("job status", lambda: status, 200),
            ("submission", lambda: http_request("POST", "/jobs", key, submission), 202),
        ]
        for name, next_request, expected in requests:
            for clients in (1, 32):
                latencies, failed = asyncio.run(
                    load(port, clients, args.seconds, next_request, expected)
                )
                rate = len(latencies) / args.seconds
                rows.append([name, clients, f"{rate:.0f}", *p50_p99(latencies), failed])
                print(f"{name}, {clients} clients: done", file=sys.stderr)
        peer = []
        with db.session(readonly=True) as session:
            for _ in range(200):
                started = time.perf_counter()
                threshold = f"80.{next(unique)}"
                solutions_page(session, job_id, where=FILTER.format(threshold), sort=SORT)
                peer.append((time.perf_counter() - started) * 1000)
        name = "peer: `solutions_page` in process, no HTTP, a new filter each"
        rows.append([name, 1, f"{1000 / float(np.mean(peer)):.0f}", *p50_p99(peer), 0])
    print(
        f"\n{args.solutions:,} solutions x 20 metrics on PostgreSQL; page: filter "
        f"`{FILTER.format(80)}`, sort {SORT}, 50 rows; `ridgerider serve --workers "
        f"{args.workers} --threads {args.threads}`; {args.seconds:.0f} s a row after "
        f"{WARMUP_SECONDS:.0f} s of warm-up\n"
    )
    header = ["request", "clients", "requests/s", "p50 ms", "p99 ms", "failed"]
    print_table(header, "lrrrrr", rows)


if __name__ == "__main__":
    main()
