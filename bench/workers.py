"""Benchmark: the worker pool against the in-process runner, on one digits-mlp job.

The default spec with `max_nodes = 40` on digits-mlp (64-8-10, from the zero point) runs
in-process (the peer, torch with 1 thread, as `ridgerider run`), then on 1 and on 2 Celery
worker processes (one torch thread each, a Redis and a PostgreSQL of their own). Then the
pool's per-task overhead: 200 probe messages, each sent once the last has started, timed from
send to start.

Target: 2 workers at least 1.7x faster than 1; overhead under 20 ms at p50.
Run: `python bench/workers.py` (about 6 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import redis
import torch
from celery import Celery
from common import p50_p99, print_table

from ridgerider.search import SearchSpec
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import create_job
from storage.models import JOB_ENDED, Job
from storage.schema import ensure_schema
from storage.units import mark_enqueued
from tests.workers.pool import pool
from workers.celery_app import DEFAULT_QUEUE
from workers.local import run_job

NODES = 40  # a job of about 6 minutes on one core


def job_spec(problem: str) -> dict:
    return SearchSpec(problem=problem, max_nodes=NODES).model_dump()


def in_process(folder: Path, problem: str) -> tuple[float, dict]:
    """The in-process runner as `ridgerider run` runs it (one torch thread)."""
    torch.set_num_threads(1)
    db = Database(folder / "local.db")
    ensure_schema(db)
    with db.session() as session:
        job_id = create_job(session, job_spec(problem)).id
    started = time.perf_counter()
    job = run_job(db, LocalArtifactStore(folder / "local-artifacts"), job_id)
    return time.perf_counter() - started, job.stats


def on_pool(folder: Path, problem: str, workers: int, probes: int) -> tuple[float, dict, list]:
    """Wall time from sending the job's start to its end, on a pool (in the new `folder`) that is
    already running."""
    folder.mkdir()
    with pool(folder, workers=workers) as (running, db):
        app = sender(running.broker_url)
        with db.session() as session:
            job_id = create_job(session, job_spec(problem)).id
        started = time.perf_counter()
        sent = app.send_task("ridgerider.start", args=[job_id])
        with db.session() as session:
            mark_enqueued(session, "job", job_id, sent.id)
        while True:
            with db.session(readonly=True) as session:
                job = session.get(Job, job_id)
                if job.status in JOB_ENDED:
                    break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        latencies = overhead(app, running.broker_url, probes) if probes else []
    app.close()
    return seconds, job.stats, latencies


def sender(broker_url: str) -> Celery:
    """A Celery app of its own that sends to `broker_url` as the service does (JSON, the
    default queue): the service's app is configured once a process, for one pool."""
    app = Celery("bench", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], task_default_queue=DEFAULT_QUEUE
    )
    return app


def overhead(app: Celery, broker_url: str, count: int) -> list[float]:
    """Send-to-start latency of `count` probe tasks, one at a time, in milliseconds (after as
    many to warm up)."""
    client = redis.Redis.from_url(broker_url)
    key = "ridgerider:bench:probe"
    for _ in range(count):
        app.send_task("ridgerider.probe", args=[key, time.time()])
        client.blpop([key], timeout=30)
    samples = []
    for _ in range(count):
        app.send_task("ridgerider.probe", args=[key, time.time()])
        _, value = client.blpop([key], timeout=30)
        samples.append(float(value) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        local_seconds, local_stats = in_process(root, args.problem)
        print(f"in-process: {local_seconds:.1f} s", file=sys.stderr)
        one_seconds, one_stats, _ = on_pool(root / "one", args.problem, 1, 0)
        print(f"1 worker: {one_seconds:.1f} s", file=sys.stderr)
        two_seconds, two_stats, latencies = on_pool(root / "two", args.problem, 2, args.probes)
        print(f"2 workers: {two_seconds:.1f} s", file=sys.stderr)
    print(f"\n{args.problem}, default spec, max_nodes = {NODES}\n")
    runs = (
        ("in-process (peer, 1 torch thread)", local_seconds, local_stats),
        ("pool, 1 worker process (1 torch thread)", one_seconds, one_stats),
        ("pool, 2 worker processes (1 torch thread each)", two_seconds, two_stats),
    )
    print_table(
        ["runner", "wall s", "speedup over 1 worker", "rides", "distinct minima"],
        "lrrrr",
        (
            [n, f"{s:.1f}", f"{one_seconds / s:.2f}x", t["rides"], t["solutions"]]
            for n, s, t in runs
        ),
    )
    p50, p99 = p50_p99(latencies)
    print(
        f"\nper-task overhead, send to start, {len(latencies)} probes on an idle pool: "
        f"p50 {p50} ms, p99 {p99} ms"
    )


if __name__ == "__main__":
    main()
