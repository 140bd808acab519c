"""Soak test: the whole service under mixed HTTP load for minutes, with a worker killed and the
broker restarted on the way, then an audit of what the database holds.

What runs, on loopback only: a PostgreSQL database of its own (dropped at the end), a
`redis-server` of its own on a free port (no persistence), a pool of 2 `ridgerider worker`
processes (one pool process each) and `ridgerider serve --workers 2` (`--server-workers`) on a
free port, with two API keys. The workers sweep every 2 s, give back a unit whose heartbeat is
10 s old and resend a message 10 s old (`RIDGERIDER_SWEEP_EVERY`, `_STALE_AFTER`,
`_REQUEUE_AFTER`), so that recovery shows within the run.

The load: `--clients` threads (httpx, one keep-alive connection each, half on each key), each
sending one request after another with a pause of 0 to 0.2 s, picked at random: submit a small
job (himmelblau, styblinski-tang:dim=2 or digits-mlp:hidden=4, a classifier, so that a diverse
selection has predictions), every submission with an `Idempotency-Key` (a 503 while the broker
is down is retried with the same key, and a quarter are sent twice on purpose: the same job must
come back); follow a job's server-sent events for 8 s (to the first line after: a quiet stream
sends a keepalive every 15 s); page solutions with filters, sorts and cursors (and
`If-None-Match`); select (`{"diverse": 2}`, or a Pareto front); export; job status; the job
list; `/healthz`; cancel 15% of the jobs, 0.5 to 5 s after submitting them; and requests that
must fail (another key's job: 404; a bad filter: 422; a forged cursor: 400; an `Idempotency-Key`
reused with another spec: 422; a diverse selection of a problem that is no classifier: 422). At
a third of the run the worker whose pool process holds a claimed unit (else the first) is killed
with SIGKILL, its whole process group, and a new one started; at two thirds Redis is killed and
started again, empty, on the same port. The soak stays under the server's limits for a key (at
most 4 jobs unfinished and 30 submissions a minute, against 20 and 60; at most 4 event streams,
against 8; at most 2 exports at once, against 4 queued a server process), so that a 429 is an
error too.

The report: requests in all; errors by status (any 5xx, any 4xx not provoked on purpose, and
transport errors: a dropped connection or a timeout of 60 s), except a 503 from `/healthz` or
`POST /jobs` sent while Redis was down or within 5 s of its return, which is the documented
answer and is counted on its own row; p50/p99 latency by kind of request (for events, until the
response's headers); the jobs submitted and how they ended; the audit below; the server's
resident memory (VmRSS of `serve` and all its descendants, from /proc, every second).

The audit, from the database once every job has ended (or after 3 minutes of waiting). A unit is
a node (its expansion or evaluation) or a ride; it moves pending -> claimed -> done | failed |
skipped by compare-and-set under a claim token, and a job's `outstanding` counts its units not
yet ended; finalisation stores `storage.progress.counts` in the job's `stats` once it is 0.
- A unit is lost if it is still pending or claimed in a job that ended finished or cancelled:
  nothing will do it, and the job was finalised without it.
- A unit is done twice if its work was recorded twice: a second ride from the same node along
  the same eigenvector and sign (an expansion recorded twice), or a second solution of one node
  (an evaluation recorded twice). Both are unique constraints, so the counters are checked too:
  a job whose counters disagree with its rows is one that ended with `outstanding` not 0 (a unit
  counted off twice, or never), whose done evaluations differ in number from its solutions, or
  whose `stats` differ from `counts` taken now (something was recorded after it was finalised:
  a unit done again after its job ended).
Units redone after their worker died (attempts > 1) are expected, and shown as such.

Exit status 1 if any error (5xx, 4xx not provoked, transport), a unit lost or done twice, a job
whose counters disagree, a job unfinished, failed (every job sent is valid) or cancelled
without being asked to. The first errors are printed with the server log lines of their request
ids, unfinished jobs with their units and times, and every process's error lines.

Run: `python bench/soak.py` (10 minutes of load, about 1 of setup, up to 3 of waiting for the
last jobs; `--minutes 1` for a short one; `--logs DIR` keeps the processes' logs). Needs
PostgreSQL at RIDGERIDER_TEST_POSTGRES or postgres@127.0.0.1:5432, and `redis-server` on the
PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.database import Database
from storage.models import JOB_ENDED, UNIT_ACTIVE, Job, Node, Ride, Solution
from storage.progress import counts
from storage.schema import ensure_schema
from tests.api.test_cli import RIDGERIDER
from tests.conftest import REPOSITORY, postgres_database
from tests.workers.pool import free_port, redis_server

SETTINGS = {
    "RIDGERIDER_STALE_AFTER": "10",
    "RIDGERIDER_REQUEUE_AFTER": "10",
    "RIDGERIDER_SWEEP_EVERY": "2",
}
SPECS = (  # (spec, weight): jobs of a few seconds, and a classifier of about 15 s
    ({"problem": "himmelblau", "max_nodes": 8}, 2),
    ({"problem": "styblinski-tang:dim=2", "max_nodes": 8}, 2),
    ({"problem": "digits-mlp:hidden=4", "max_nodes": 4}, 1),
)
CLASSIFIERS = ("digits-mlp",)
FILTERS = ("sharpness > 0", "loss < 1e9 and depth >= 1", "grad_norm < 1 or index == 0")
SORTS = ("id", "-sharpness", "loss", "-depth")
KEYS = ("soak-a", "soak-b")
WORKERS = 2
MAX_ACTIVE_JOBS = 4  # of the soak's, at once (the server's limit is 20 a key)
SUBMISSIONS_PER_MINUTE = 30  # a key (the server's limit is 60): so that a 429 is an error
EXPORTS_AT_ONCE = 2  # in all (the server queues 4 a process)
CANCEL_SHARE = 0.15
RETRY_SHARE = 0.25
THINK_SECONDS = 0.2
WATCH_SECONDS = 8.0
STREAM_READ_TIMEOUT = 30.0  # an event stream says nothing for up to 15 s (then a keepalive)
PAGES = 4
SUBMIT_PATIENCE = 60.0  # seconds of retrying a submission the broker's outage refused
BROKER_GRACE = 5.0
DRAIN_SECONDS = 180.0
READY_TIMEOUT = 120.0
SERVER_STOP_SECONDS = 20.0
HTTP_TIMEOUT = 60.0
JOIN_SECONDS = 90.0  # for the threads to finish what they are doing once the load stops
EVIDENCE = 10  # error samples kept
LOG_LINES = 8  # error lines shown of each process's log
CHILD_DIED = "] died"  # uvicorn's line when it replaces a server process


def tells_of_error(line: str) -> bool:
    """Whether a log line tells of an error (Celery's, uvicorn's and our loggers' levels)."""
    return any(word in line for word in ("ERROR", "CRITICAL", "Traceback", CHILD_DIED))


def exited(process: subprocess.Popen) -> bool:
    """Whether the process has exited, without reaping it (see `kill_group`)."""
    if process.returncode is not None:
        return True
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def kill_group(process: subprocess.Popen, grace: float = 0.0) -> None:
    """Stop the process's group (it leads one: started in a session of its own): SIGTERM to the
    leader and up to `grace` seconds to exit, then SIGKILL to the whole group (children it left
    included). The leader is reaped only then, so that the group's id cannot have been reused
    by another process meanwhile; a reaped leader's group was killed already."""
    if process.returncode is not None:
        return
    if grace:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not exited(process) and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def tree_rss_kib(root: int) -> int:
    """VmRSS of `root` and all its descendants, in KiB, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children[parent].append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children[pid]
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass
class Service:
    """The processes under test: Redis, the workers and the server, each leading a process
    group of its own, so that a kill takes its children and Ctrl-C reaches only the soak. Every
    process started is kept, and none starts once `close` has begun (the chaos thread may be
    starting one then)."""

    folder: Path
    db_url: str
    redis_port: int = field(default_factory=free_port)
    redis: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    server: subprocess.Popen | None = None
    url: str = ""
    started: list[subprocess.Popen] = field(default_factory=list)
    closing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPOSITORY),
            "RIDGERIDER_DATABASE_URL": self.db_url,
            "RIDGERIDER_BROKER_URL": self.broker_url,
            "RIDGERIDER_ARTIFACTS": str(self.folder / "artifacts"),
            **SETTINGS,
        }

    def popen(self, args: list[str], log: str) -> subprocess.Popen:
        with self.lock, (self.folder / log).open("a") as out:
            if self.closing:
                raise RuntimeError(f"not starting {args[0]}: the service is being stopped")
            process = subprocess.Popen(
                args,
                env=self.env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.started.append(process)
            return process

    def start_redis(self) -> None:
        """A fresh, empty redis-server on the service's port, answering when this returns."""
        self.redis = redis_server(self.redis_port, lambda args: self.popen(args, "redis.log"))

    def kill_redis(self) -> None:
        kill_group(self.redis)

    def start_worker(self) -> str:
        """A `ridgerider worker` with one pool process; its name, once it is ready."""
        name = f"w{len(self.workers)}"
        worker = self.popen(
            [str(RIDGERIDER), "worker", "--concurrency", "1", "--hostname", f"{name}@%h"],
            f"{name}.log",
        )
        self.workers[name] = worker
        deadline = time.monotonic() + READY_TIMEOUT
        while " ready." not in self.log(f"{name}.log"):
            if exited(worker) or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{self.log(f'{name}.log')}")
            time.sleep(0.2)
        return name

    def create_key(self, name: str) -> str:
        """`ridgerider keys create NAME`: the key it prints."""
        made = subprocess.run(
            [str(RIDGERIDER), "keys", "create", name],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if made.returncode != 0:
            raise RuntimeError(f"keys create {name} failed:\n{made.stderr}")
        return made.stdout.strip()

    def start_server(self, workers: int) -> None:
        """`ridgerider serve --workers N` on a free port, answering `/healthz` when this
        returns."""
        port = free_port()
        self.server = self.popen(
            [str(RIDGERIDER), "serve", "--port", str(port), "--workers", str(workers)], "serve.log"
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if exited(self.server) or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{self.log('serve.log')}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        return (self.folder / name).read_text(errors="replace")

    def close(self) -> None:
        """Stop the server gently, then kill every process group started."""
        with self.lock:
            self.closing = True
        if self.server is not None:  # SIGTERM first: uvicorn stops its processes
            kill_group(self.server, grace=SERVER_STOP_SECONDS)
        for process in self.started:
            kill_group(process)


@dataclass
class Submitted:
    """A job the soak submitted, and what the database last said of it."""

    id: int
    owner: int
    problem: str
    cancel_at: float | None
    cancel_sent: bool = False
    status: str = "queued"
    solutions: int = 0

    @property
    def classifier(self) -> bool:
        return self.problem.split(":")[0] in CLASSIFIERS


class Jobs:
    """The soak's jobs, shared by the clients; statuses are refreshed from the database."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_id: dict[int, Submitted] = {}
        self.sending = 0
        self.sent: dict[int, list[float]] = defaultdict(list)

    def reserve(self, owner: int) -> bool:
        """Whether `owner` may submit a job now (MAX_ACTIVE_JOBS, SUBMISSIONS_PER_MINUTE);
        if so, the submission counts until `release`."""
        now = time.monotonic()
        with self.lock:
            unfinished = sum(job.status not in JOB_ENDED for job in self.by_id.values())
            recent = [at for at in self.sent[owner] if at > now - 60]
            self.sent[owner] = recent
            if (
                unfinished + self.sending >= MAX_ACTIVE_JOBS
                or len(recent) >= SUBMISSIONS_PER_MINUTE
            ):
                return False
            self.sending += 1
            recent.append(now)
            return True

    def release(self, job: Submitted | None) -> None:
        """The reserved submission is over: `job` was made, or None."""
        with self.lock:
            self.sending -= 1
            if job is not None:
                self.by_id.setdefault(job.id, job)

    def refresh(self, db: Database) -> None:
        with db.session(readonly=True) as session:
            statuses = dict(session.execute(select(Job.id, Job.status)).all())
            solutions = dict(
                session.execute(
                    select(Solution.job_id, func.count()).group_by(Solution.job_id)
                ).all()
            )
        with self.lock:
            for job in self.by_id.values():
                job.status = statuses.get(job.id, job.status)
                job.solutions = solutions.get(job.id, 0)

    def of(self, owner: int, want: Callable[[Submitted], bool] = lambda _: True) -> list[Submitted]:
        with self.lock:
            return [job for job in self.by_id.values() if job.owner == owner and want(job)]

    def due_cancels(self, owner: int, now: float) -> list[Submitted]:
        """Jobs of `owner` whose cancel is due; each is handed out once."""
        with self.lock:
            due = [
                job
                for job in self.by_id.values()
                if job.owner == owner
                and not job.cancel_sent
                and job.cancel_at is not None
                and job.cancel_at <= now
            ]
            for job in due:
                job.cancel_sent = True
            return due


@dataclass
class Sample:
    kind: str
    status: int | None  # None: a transport error
    ms: float
    verdict: str  # ok | provoked | broker down | error


class Recorder:
    """Every request's kind, status, latency and verdict; the first errors in full."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.evidence: list[str] = []
        self.outages: list[list[float]] = []  # [down, up] in monotonic seconds
        self.lock = threading.Lock()

    def broker_down(self, sent: float, answered: float) -> bool:
        with self.lock:
            return any(down <= answered and sent <= up + BROKER_GRACE for down, up in self.outages)

    def record(self, sample: Sample, what: str | None = None) -> None:
        with self.lock:
            self.samples.append(sample)
            if what is not None and len(self.evidence) < EVIDENCE:
                self.evidence.append(what)

    def error(self, kind: str, what: str) -> None:
        """A failed check that is not one request's status (e.g. a wrong answer)."""
        self.record(Sample(kind, -1, 0.0, "error"), what)


def describe(response: httpx.Response) -> str:
    """The request and its answer, for the evidence (a 500 carries the request id that the
    server's log holds its traceback under)."""
    request = response.request
    request_id = response.headers.get("x-request-id", "-")
    body = response.read()[:500].decode(errors="replace")
    return (
        f"{request.method} {request.url.raw_path.decode()} -> {response.status_code} "
        f"(request id {request_id}): {body}"
    )


class Client:
    """One client thread: requests picked at random until the soak stops."""

    def __init__(self, soak: Soak, index: int) -> None:
        self.soak, self.owner = soak, index % 2
        self.rng = random.Random(index)
        self.http = httpx.Client(
            base_url=soak.service.url,
            headers={"Authorization": f"Bearer {soak.keys[self.owner]}"},
            timeout=HTTP_TIMEOUT,
        )
        self.last_submission: tuple[str, dict[str, Any]] | None = None
        self.actions: list[tuple[Callable[[], None], float]] = [
            (self.healthz, 1),
            (self.status, 4),
            (self.listing, 1),
            (self.submit, 3),
            (self.events, 1),
            (self.solutions, 4),
            (self.select, 1.5),
            (self.export, 0.5),
            (self.provoke, 1),
        ]

    def run(self) -> None:
        functions, weights = zip(*self.actions, strict=True)
        try:
            while not self.soak.stop.is_set():
                for job in self.soak.jobs.due_cancels(self.owner, time.monotonic()):
                    self.call("cancel", "POST", f"/jobs/{job.id}/cancel", {202})
                self.rng.choices(functions, weights)[0]()
                self.soak.stop.wait(self.rng.uniform(0, THINK_SECONDS))
        finally:
            self.http.close()

    def call(
        self, kind: str, method: str, path: str, expected: set[int], **kwargs: Any
    ) -> httpx.Response | None:
        """Send a request and judge it: its expected statuses are `ok` (or `provoked` for a
        4xx), a 503 from what needs the broker while it was down is `broker down`, anything else
        an error. The response, or None after a transport error."""
        sent = time.monotonic()
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            ms = (time.monotonic() - sent) * 1000
            what = f"{method} {path}: {type(error).__name__}: {error} after {ms:.0f} ms"
            self.soak.recorder.record(Sample(kind, None, ms, "error"), what)
            return None
        self.judge(kind, response, expected, sent)
        return response

    def judge(self, kind: str, response: httpx.Response, expected: set[int], sent: float) -> str:
        answered = time.monotonic()
        status, what = response.status_code, None
        if status in expected:
            verdict = "provoked" if status >= 400 else "ok"
        elif (
            status == 503
            and kind in ("healthz", "submit")
            and self.soak.recorder.broker_down(sent, answered)
        ):
            verdict = "broker down"
        else:
            verdict, what = "error", describe(response)
        self.soak.recorder.record(Sample(kind, status, (answered - sent) * 1000, verdict), what)
        return verdict

    def pick(self, want: Callable[[Submitted], bool] = lambda _: True) -> Submitted | None:
        jobs = self.soak.jobs.of(self.owner, want)
        return self.rng.choice(jobs) if jobs else None

    def healthz(self) -> None:
        self.call("healthz", "GET", "/healthz", {200})

    def status(self) -> None:
        job = self.pick(lambda j: j.status not in JOB_ENDED) or self.pick()
        if job is None:
            self.healthz()
        else:
            self.call("status", "GET", f"/jobs/{job.id}", {200})

    def listing(self) -> None:
        response = self.call("list", "GET", "/jobs", {200}, params={"limit": 3})
        cursor = response is not None and response.is_success and response.json()["next_cursor"]
        if cursor:
            self.call("list", "GET", "/jobs", {200}, params={"limit": 3, "cursor": cursor})

    def submit(self) -> None:
        """A new job (with a key, retried while the broker is down); a quarter are sent
        twice on purpose, and must come back as the same job."""
        if not self.soak.jobs.reserve(self.owner):
            self.status()
            return
        specs, weights = zip(*SPECS, strict=True)
        spec = self.rng.choices(specs, weights)[0]
        key = uuid.uuid4().hex
        job_id = None
        try:
            job_id = self.send_job(spec, key)
        finally:
            cancel_at = None
            if self.rng.random() < CANCEL_SHARE:
                cancel_at = time.monotonic() + self.rng.uniform(0.5, 5)
            made = job_id and Submitted(job_id, self.owner, spec["problem"], cancel_at)
            self.soak.jobs.release(made or None)
        if job_id is None:
            return
        self.last_submission = key, spec
        if self.rng.random() < RETRY_SHARE:
            again = self.send_job(spec, key)
            if again is not None and again != job_id:
                self.soak.recorder.error(
                    "submit", f"Idempotency-Key {key} sent again gave job {again}, not {job_id}"
                )

    def send_job(self, spec: dict[str, Any], key: str) -> int | None:
        """POST /jobs until it is accepted (a transport error or the broker's outage: again,
        with the same key); the job's id, or None if it was refused otherwise."""
        deadline = time.monotonic() + SUBMIT_PATIENCE
        while True:
            sent = time.monotonic()
            headers = {"Idempotency-Key": key}
            response = self.call("submit", "POST", "/jobs", {202}, json=spec, headers=headers)
            if response is not None and response.status_code == 202:
                return response.json()["id"]
            retry = response is None or self.soak.recorder.broker_down(sent, time.monotonic())
            if not retry or time.monotonic() > deadline:
                return None
            time.sleep(1)

    def events(self) -> None:
        """Follow the job's events for up to WATCH_SECONDS; a job that had ended must say
        `finished` within them."""
        job = self.pick(lambda j: j.status not in JOB_ENDED) or self.pick()
        if job is None:
            self.healthz()
            return
        ended_before = job.status in JOB_ENDED
        path = f"/jobs/{job.id}/events"
        sent = time.monotonic()
        finished, lines = False, 0
        try:
            timeout = httpx.Timeout(HTTP_TIMEOUT, read=STREAM_READ_TIMEOUT)
            with self.http.stream("GET", path, timeout=timeout) as response:
                if self.judge("events", response, {200}, sent) != "ok":
                    return
                for line in response.iter_lines():
                    lines += 1
                    self.soak.count("events received", line.startswith("event:"))
                    finished = finished or line == "event: finished"
                    if time.monotonic() > sent + WATCH_SECONDS:
                        break
        except httpx.HTTPError as error:
            after = f"after {time.monotonic() - sent:.1f} s and {lines} lines"
            self.soak.recorder.error("events", f"GET {path}: {type(error).__name__} {after}")
            return
        self.soak.count("event streams followed")
        if ended_before and not finished:
            self.soak.recorder.error("events", f"GET {path}: job ended, no `finished` event")

    def solutions(self) -> None:
        """Pages of a job's solutions by cursor (no solution twice), sometimes the first page
        again with its ETag."""
        job = self.pick(lambda j: j.solutions > 0) or self.pick()
        if job is None:
            self.healthz()
            return
        params: dict[str, Any] = {"limit": self.rng.choice((1, 2, 5))}
        if job.solutions:
            params |= {"filter": self.rng.choice(FILTERS), "sort": self.rng.choice(SORTS)}
        else:
            params |= {"filter": "depth >= 0", "sort": "id"}
        path = f"/jobs/{job.id}/solutions"
        seen: list[int] = []
        first = self.call("solutions", "GET", path, {200}, params=params)
        response = first
        for _ in range(PAGES - 1):
            if response is None or response.status_code != 200:
                return
            page = response.json()
            seen += [row["id"] for row in page["solutions"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
            response = self.call("solutions", "GET", path, {200}, params=params)
        if len(seen) != len(set(seen)):
            self.soak.recorder.error("solutions", f"GET {path} {params}: pages repeat {seen}")
        if first is not None and first.status_code == 200 and self.rng.random() < 0.3:
            params.pop("cursor", None)
            tag = {"If-None-Match": first.headers["etag"]}
            self.call("solutions", "GET", path, {200, 304}, params=params, headers=tag)

    def select(self) -> None:
        job = self.pick(lambda j: j.solutions > 0)
        if job is None:
            self.status()
            return
        path = f"/jobs/{job.id}/select"
        if job.classifier or self.rng.random() < 0.5:
            expected = {200} if job.classifier else {422}  # 422: no predictions to compare
            self.call("select", "POST", path, expected, json={"diverse": 2})
        else:
            objectives = [
                {"name": "loss", "direction": "min"},
                {"name": "sharpness", "direction": "min"},
            ]
            self.call("select", "POST", path, {200}, json={"pareto": objectives})

    def export(self) -> None:
        job = self.pick(lambda j: j.solutions > 0 and j.status in JOB_ENDED) or self.pick()
        if job is None or not self.soak.exports.acquire(blocking=False):
            self.status()
            return
        try:
            self.export_archive(job)
        finally:
            self.soak.exports.release()

    def export_archive(self, job: Submitted) -> None:
        params = {"diverse": 2} if job.classifier and job.solutions else {}
        path = f"/jobs/{job.id}/export"
        response = self.call("export", "GET", path, {200}, params=params)
        built = response is not None and response.status_code == 200
        if built and not response.content.startswith(b"\x1f\x8b"):
            self.soak.recorder.error("export", f"GET {path}: the archive is not gzip")

    def provoke(self) -> None:
        """A request that must be refused, with the status it must get."""
        mine, theirs = self.pick(), self.soak.jobs.of(1 - self.owner)
        if mine is None:
            self.healthz()
            return
        path = f"/jobs/{mine.id}/solutions"
        choice = self.rng.randrange(4)
        if choice == 0 and theirs:
            self.call("provoked", "GET", f"/jobs/{self.rng.choice(theirs).id}", {404})
        elif choice == 1:
            self.call("provoked", "GET", path, {422}, params={"filter": "loss < and"})
        elif choice == 2:
            self.call("provoked", "GET", path, {400}, params={"cursor": "eyJqIjogMX0.forged"})
        elif self.last_submission is not None:
            key, spec = self.last_submission
            other = {**spec, "max_nodes": spec["max_nodes"] + 1}
            headers = {"Idempotency-Key": key}
            self.call("provoked", "POST", "/jobs", {422}, json=other, headers=headers)


@dataclass
class Soak:
    """The run: the service, the keys, the clients' shared state, the chaos timeline."""

    service: Service
    db: Database
    keys: tuple[str, ...]
    jobs: Jobs = field(default_factory=Jobs)
    recorder: Recorder = field(default_factory=Recorder)
    stop: threading.Event = field(default_factory=threading.Event)
    exports: threading.Semaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(EXPORTS_AT_ONCE)
    )
    counters: Counter[str] = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)
    killed_unit: tuple[str, int] | None = None
    rss_kib: list[int] = field(default_factory=list)

    def count(self, name: str, by: int = 1) -> None:
        with self.recorder.lock:
            self.counters[name] += by

    def note(self, started: float, what: str) -> None:
        """A line of the timeline: seconds into the load, and the time of day (UTC, as the
        logs and the database write it)."""
        clock = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        line = f"{time.monotonic() - started:.0f} s ({clock} UTC): {what}"
        self.timeline.append(line)
        print(line, file=sys.stderr)

    def chaos(self, started: float, seconds: float) -> None:
        """Kill a worker at a third of the run (and start another), restart Redis at two
        thirds."""
        if self.stop.wait(seconds / 3):
            return
        name, unit = self.busy_worker()
        self.killed_unit = unit
        kill_group(self.service.workers[name])
        held = f", its pool process held {unit[0]} {unit[1]}" if unit else ", idle"
        self.note(started, f"worker {name} killed with SIGKILL{held}")
        self.note(started, f"worker {self.service.start_worker()} started and ready")
        if self.stop.wait(max(0.0, started + 2 * seconds / 3 - time.monotonic())):
            return
        outage = [time.monotonic(), math.inf]
        with self.recorder.lock:
            self.recorder.outages.append(outage)
        self.service.kill_redis()
        self.note(started, "Redis killed")
        self.service.start_redis()
        outage[1] = time.monotonic()
        self.note(started, f"Redis started again, empty, after {outage[1] - outage[0]:.2f} s")

    def busy_worker(self) -> tuple[str, tuple[str, int] | None]:
        """A live worker whose pool process holds a claimed unit (waiting up to 10 s for one),
        and the unit; else the first live worker."""
        live = {w.pid: name for name, w in self.service.workers.items() if not exited(w)}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.db.session(readonly=True) as session:
                claimed = [
                    (kind, unit_id, token)
                    for kind, table in (("node", Node), ("ride", Ride))
                    for unit_id, token in session.execute(
                        select(table.id, table.claim_token).where(table.state == "claimed")
                    )
                ]
            for kind, unit_id, token in claimed:
                with contextlib.suppress(ValueError, ProcessLookupError):
                    group = os.getpgid(int(token.split(":")[0]))
                    if group in live:
                        return live[group], (kind, unit_id)
            time.sleep(0.1)
        return next(iter(live.values())), None

    def sample(self) -> None:
        self.rss_kib.append(tree_rss_kib(self.service.server.pid))
        self.jobs.refresh(self.db)


@dataclass
class Audit:
    """What the database says once the run is over."""

    statuses: Counter[str]
    unfinished: list[str]
    failed: list[str]
    cancelled_unasked: list[int]
    lost: int
    lost_units: list[str]
    twice: int
    disagreeing: list[str]
    redone: int
    killed_unit: str


def audit(soak: Soak) -> Audit:
    """The jobs' ends, and the units lost or done twice (see the module's docstring)."""
    asked = {job.id for job in soak.jobs.by_id.values() if job.cancel_sent}
    with soak.db.session(readonly=True) as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        active: Counter[int] = Counter()
        done_evaluations: Counter[int] = Counter()
        for table in (Node, Ride):
            active.update(
                dict(
                    session.execute(
                        select(table.job_id, func.count())
                        .where(table.state.in_(UNIT_ACTIVE))
                        .group_by(table.job_id)
                    ).all()
                )
            )
        done_evaluations.update(
            dict(
                session.execute(
                    select(Node.job_id, func.count())
                    .where(Node.work == "evaluate", Node.state == "done")
                    .group_by(Node.job_id)
                ).all()
            )
        )
        solutions = dict(
            session.execute(select(Solution.job_id, func.count()).group_by(Solution.job_id)).all()
        )
        twice = excess(session, Ride, "from_node_id", "eigen_index", "sign")
        twice += excess(session, Solution, "node_id")
        redone = sum(
            session.scalar(
                select(func.count()).where(table.attempts > 1, table.state.not_in(UNIT_ACTIVE))
            )
            for table in (Node, Ride)
        )
        killed_unit = "none held"
        if soak.killed_unit is not None:
            kind, unit_id = soak.killed_unit
            unit = session.get(Node if kind == "node" else Ride, unit_id)
            killed_unit = (
                f"{kind} {unit_id} of job {unit.job_id}: {unit.state} after {unit.attempts} "
                "attempts"
            )
        result = Audit(Counter(), [], [], [], 0, [], twice, [], redone, killed_unit)
        for job in jobs:
            result.statuses[job.status] += 1
            if job.status not in JOB_ENDED:
                result.unfinished.append(
                    f"job {job.id} ({job.problem}) {job.status}: outstanding {job.outstanding}, "
                    f"cancel asked {job.id in asked}, cancel flag {job.cancel_requested}, "
                    f"sends {job.sends}, created {job.created_at}, started {job.started_at}, "
                    f"cancelled {job.cancelled_at}, finished {job.finished_at}; units pending or "
                    f"claimed: {'; '.join(active_units(session, job.id)) or 'none'}; the last "
                    f"claimed: {'; '.join(last_claimed(session, job.id)) or 'none'}"
                )
                continue
            if job.status == "failed":
                result.failed.append(f"job {job.id} ({job.problem}): {job.error}")
                continue
            if job.status == "cancelled" and job.id not in asked:
                result.cancelled_unasked.append(job.id)
            result.lost += active[job.id]
            if active[job.id]:
                units = "; ".join(active_units(session, job.id))
                result.lost_units.append(f"job {job.id} ({job.status}): {units}")
            problems = []
            if job.outstanding != 0:
                problems.append(f"outstanding {job.outstanding}")
            if done_evaluations[job.id] != solutions.get(job.id, 0):
                problems.append(
                    f"{done_evaluations[job.id]} evaluations done, "
                    f"{solutions.get(job.id, 0)} solutions"
                )
            if job.stats:
                now = counts(session, job.id)
                problems += [
                    f"{name} {job.stats.get(name)} in stats, {value} now"
                    for name, value in now.items()
                    if job.stats.get(name) != value
                ]
            if problems:
                result.disagreeing.append(f"job {job.id} ({job.status}): " + "; ".join(problems))
    return result


def active_units(session: Session, job_id: int) -> list[str]:
    """The job's pending or claimed units, with their claims and messages (evidence)."""
    found = []
    for kind, table in (("node", Node), ("ride", Ride)):
        for unit in session.scalars(
            select(table).where(table.job_id == job_id, table.state.in_(UNIT_ACTIVE))
        ):
            work = unit.work if kind == "node" else "ride"
            found.append(
                f"{kind} {unit.id} ({work}) {unit.state}, attempts {unit.attempts}, sends "
                f"{unit.sends}, claim {unit.claim_token}, claimed {unit.claimed_at}, heartbeat "
                f"{unit.heartbeat_at}, enqueued {unit.enqueued_at}"
            )
    return found


def last_claimed(session: Session, job_id: int) -> list[str]:
    """The job's node and ride claimed last, and what became of them (evidence)."""
    found = []
    for kind, table in (("node", Node), ("ride", Ride)):
        unit = session.scalar(
            select(table)
            .where(table.job_id == job_id, table.claimed_at.is_not(None))
            .order_by(table.claimed_at.desc())
            .limit(1)
        )
        if unit is not None:
            found.append(
                f"{kind} {unit.id} {unit.state}, attempts {unit.attempts}, claimed "
                f"{unit.claimed_at}, heartbeat {unit.heartbeat_at}"
            )
    return found


def excess(session: Session, model: type[Ride | Solution], *columns: str) -> int:
    """Rows of `model` beyond the first in each group of equal `columns`."""
    table = model.__table__
    groups = (
        select(func.count().label("n"))
        .select_from(table)
        .group_by(*(table.c[name] for name in columns))
        .having(func.count() > 1)
        .subquery()
    )
    return session.scalar(select(func.coalesce(func.sum(groups.c.n - 1), 0)))


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.1f}" if values else "-"


def report(soak: Soak, result: Audit, args: argparse.Namespace, drained: float) -> bool:
    """Print the tables; whether the soak passed."""
    samples = soak.recorder.samples
    requests = [s for s in samples if s.status != -1]
    errors = [s for s in samples if s.verdict == "error"]
    by_status = Counter("transport" if s.status is None else str(s.status) for s in errors)
    by_status.update({"wrong answer": by_status.pop("-1", 0)})
    broker_down = sum(s.verdict == "broker down" for s in samples)
    provoked = sum(s.verdict == "provoked" for s in samples)
    mib = [kib / 1024 for kib in soak.rss_kib]
    print(
        f"\nsoak: {args.minutes:g} min of load from {args.clients} clients on `ridgerider serve "
        f"--workers {args.server_workers}`"
        f", a pool of {WORKERS} workers (1 process each), PostgreSQL, Redis; then "
        f"{drained:.0f} s of waiting for the jobs to end\n"
    )
    for line in soak.timeline:
        print(f"- {line}")
    print("\n| request | count | errors | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    kinds = dict.fromkeys(s.kind for s in requests)
    for kind in sorted(kinds):
        mine = [s for s in requests if s.kind == kind]
        ms = [s.ms for s in mine if s.status is not None]
        print(
            f"| {kind} | {len(mine)} | {sum(s.verdict == 'error' for s in mine)} | "
            f"{percentile(ms, 50)} | {percentile(ms, 99)} | {max(ms, default=0):.0f} |"
        )
    ended, jobs = result.statuses, soak.jobs.by_id.values()
    passed = not (errors or result.unfinished or result.failed or result.cancelled_unasked)
    passed = passed and not (result.lost or result.twice or result.disagreeing)
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(by_status.items()) if n)
    streams, events = soak.counters["event streams followed"], soak.counters["events received"]
    rss = f"{mib[0]:.0f} / {max(mib):.0f} / {mib[-1]:.0f}" if mib else "-"
    died = sum(CHILD_DIED in line for line in soak.service.log("serve.log").splitlines())
    rows = [
        ("requests in all", f"{len(requests):,}"),
        ("errors (5xx, 4xx not provoked, transport, wrong answers)", len(errors)),
        ("errors by status", statuses or "none"),
        (f"503 while Redis was down or within {BROKER_GRACE:g} s (documented)", broker_down),
        ("4xx provoked on purpose, answered as they must be", provoked),
        ("event streams followed / events received", f"{streams} / {events:,}"),
        ("jobs submitted", len(jobs)),
        ("jobs finished / failed / cancelled", " / ".join(str(ended[s]) for s in JOB_ENDED)),
        ("jobs a cancel was sent to", sum(job.cancel_sent for job in jobs)),
        ("jobs still unfinished", len(result.unfinished)),
        ("jobs cancelled without a cancel", len(result.cancelled_unasked)),
        ("units lost", result.lost),
        ("units done twice", result.twice),
        ("jobs whose counters disagree with their rows", len(result.disagreeing)),
        ("units redone (their worker died, or their message was lost)", result.redone),
        ("the unit the killed worker held", result.killed_unit),
        ("server RSS, MiB: start / peak / end", rss),
        ("server processes uvicorn replaced (a child died or missed its health check)", died),
        ("result", "PASS" if passed else "FAIL"),
    ]
    print("\n| what | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return passed


def evidence(soak: Soak, result: Audit) -> None:
    """The first errors, the server log lines of their request ids, and what went wrong in
    the database."""
    server_log = soak.service.log("serve.log").splitlines()
    for what in soak.recorder.evidence:
        print(f"\nerror: {what}", file=sys.stderr)
        request_id = what.partition("(request id ")[2].partition(")")[0]
        if request_id and request_id != "-":
            at = next((i for i, line in enumerate(server_log) if request_id in line), None)
            if at is not None:
                print("\n".join(server_log[at : at + 40]), file=sys.stderr)
    for line in result.unfinished + result.failed + result.lost_units + result.disagreeing:
        print(f"job: {line}", file=sys.stderr)
    if result.cancelled_unasked:
        print(f"cancelled without a cancel: {result.cancelled_unasked}", file=sys.stderr)
    for log in sorted(soak.service.folder.glob("*.log")):
        lines = [line for line in soak.service.log(log.name).splitlines() if tells_of_error(line)]
        if lines:
            shown = "\n  ".join(lines[:LOG_LINES])
            print(f"\n{log.name}: {len(lines)} error lines; the first:\n  {shown}", file=sys.stderr)


def run(args: argparse.Namespace, folder: Path, db_url: str) -> bool:
    """Start everything, load it, audit; stop everything (also on failure)."""
    service = Service(folder, db_url)
    db = Database(db_url)
    try:
        ensure_schema(db)
        service.start_redis()
        for _ in range(WORKERS):
            service.start_worker()
        keys = tuple(service.create_key(name) for name in KEYS)
        service.start_server(args.server_workers)
        soak = Soak(service, db, keys)
        soak.sample()
        clients = [Client(soak, i) for i in range(args.clients)]
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        seconds = args.minutes * 60
        started = time.monotonic()
        chaos = threading.Thread(target=soak.chaos, args=(started, seconds), daemon=True)
        print(f"load for {seconds:.0f} s on {service.url}", file=sys.stderr)
        for thread in [*threads, chaos]:
            thread.start()
        try:
            while time.monotonic() < started + seconds:
                soak.sample()
                time.sleep(1)
        finally:
            soak.stop.set()
            deadline = time.monotonic() + JOIN_SECONDS
            for thread in [*threads, chaos]:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        soak.note(started, "load stopped; waiting for the jobs to end")
        drain_from = time.monotonic()
        while time.monotonic() < drain_from + DRAIN_SECONDS:
            soak.sample()
            with db.session(readonly=True) as session:
                if not session.scalar(select(func.count()).where(Job.status.not_in(JOB_ENDED))):
                    break
            time.sleep(1)
        drained = time.monotonic() - drain_from
        soak.sample()
        result = audit(soak)
        passed = report(soak, result, args, drained)
        evidence(soak, result)
        return passed
    finally:
        service.close()
        db.dispose()
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in folder.glob("*.log"):
                shutil.copy(log, args.logs / log.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--server-workers", type=int, default=2, help="`serve --workers`")
    parser.add_argument("--logs", type=Path, help="copy the logs of every process here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    with (
        tempfile.TemporaryDirectory(prefix="ridgerider-soak-") as folder,
        postgres_database("ridgerider_soak") as db_url,
    ):
        passed = run(args, Path(folder), db_url)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
