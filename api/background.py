"""Work done off the request path, in a process of its own (one per kind of work and server
process, spawned on first use), so that plots, archives and MLflow calls hold neither the GIL
nor the threads that other requests need; a bounded number wait their turn (429 beyond)."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from api.limits import too_many
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.export import export
from storage.handoffs import finish_handoff, start_handoff
from storage.jobs import get_job


class BackgroundProcess:
    """Runs `what` (exports, hand-offs) one at a time in a child process; at most
    `most_waiting` queue."""

    def __init__(self, what: str, most_waiting: int) -> None:
        self.what = what
        self.most_waiting = most_waiting
        self.waiting = 0
        self._pool: ProcessPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def check_room(self) -> None:
        """Raises: ProblemError: 429 when `most_waiting` are queued already."""
        if self.waiting >= self.most_waiting:
            raise too_many(f"{self.waiting} {self.what} are queued on this server; retry soon", 10)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in the child process; its errors are raised here.

        Raises:
            ProblemError: 429 when `most_waiting` are queued already.
        """
        self.check_room()
        return await self._execute(function, *args)

    def start(
        self,
        function: Callable[..., Any],
        *args: Any,
        on_error: Callable[[BaseException], None],
    ) -> None:
        """`function(*args)` in the child process, not waited for: `function` records its own
        outcome, and `on_error(error)` (run in a thread) records one the child could not (it
        died). The caller checked `check_room` before promising the work."""

        async def execute() -> None:
            try:
                await self._execute(function, *args)
            except Exception as error:
                await asyncio.to_thread(on_error, error)

        task = asyncio.get_running_loop().create_task(execute())
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._pool is None:  # spawned, not forked: the server has threads and a loop
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        self.waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except BrokenProcessPool:  # the child died: the next piece of work gets a new one
            self._pool = None
            raise
        finally:
            self.waiting -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def build_export(
    db_url: str, artifacts: str, job_id: int, destination: str, ids: list[int], selection: str
) -> str:
    """`storage.export.export` for the export process."""
    db = Database(db_url)
    try:
        written = export(
            db,
            LocalArtifactStore(artifacts),
            job_id,
            Path(destination),
            ids=ids,
            selection=selection,
        )
        return str(written)
    finally:
        db.dispose()


@functools.lru_cache(maxsize=4)
def loaded(name: str, allow_import: bool) -> Problem:
    """The problem `name`, kept by the background process: building one can take minutes (a
    network's maximally invariant start), and a user asks for one set after another."""
    return load(name, allow_import=allow_import)


def ensemble_of(db_url: str, artifacts: str, job_id: int, ids: list[int]) -> dict[str, float]:
    """`workers.evaluation.ensemble_metrics` for the export process."""
    from workers.evaluation import ensemble_metrics

    db = Database(db_url)
    try:
        with db.session(readonly=True) as session:
            job = get_job(session, job_id)
        problem = loaded(job.problem, job.allow_import)
        return ensemble_metrics(db, LocalArtifactStore(artifacts), job_id, ids, problem)
    finally:
        db.dispose()


def hand_off_to_mlflow(db_url: str, artifacts: str, handoff_id: int, tracking_uri: str) -> None:
    """Do the hand-off `handoff_id` as its row asks, recording there how it went (its errors
    included: nobody waits for this call)."""
    from workers.mlflow_handoff import hand_off

    db = Database(db_url)
    try:
        with db.session() as session:
            handoff, job = start_handoff(session, handoff_id)
            job_id, request, allow_import = job.id, dict(handoff.request), job.allow_import
        try:
            result = hand_off(
                db,
                LocalArtifactStore(artifacts),
                job_id,
                request["ids"],
                request["selection"],
                tracking_uri=tracking_uri,
                experiment=request["experiment"],
                register=request["registered_model"],
                allow_import=allow_import,
            )
        except Exception as error:
            with db.session() as session:
                finish_handoff(session, handoff_id, error=error)
            return
        with db.session() as session:
            finish_handoff(session, handoff_id, result=result.to_json())
    finally:
        db.dispose()
