"""Where the API sends jobs: the worker pool (`Pool`, built from the settings: submits and
cancels jobs, says whether the broker answers, runs a worker), or this process
(`InProcessPool`, the local dashboard's)."""

from __future__ import annotations

import logging
import queue
import threading
from types import ModuleType
from typing import Protocol

import redis

from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import cancel_job, fail_job
from workers import celery_app
from workers.local import run_job
from workers.settings import Settings
from workers.steps import StartError

BROKER_PING_SECONDS = 2
log = logging.getLogger(__name__)


class JobPool(Protocol):
    def submit(self, db: Database, job_id: int) -> None:
        """Start a stored, queued job."""

    def cancel(self, db: Database, job_id: int) -> None:
        """Cancel a job: no unit is claimed after this; what it found is kept."""

    def status(self) -> str:
        """Whether jobs can be started: "ok", or why not."""


class Pool:
    """The pool behind `settings.broker_url`. The Celery app is configured on first use (one
    pool per process: the app is the process's)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _tasks(self) -> ModuleType:
        celery_app.configure(self.settings)
        from workers import tasks  # torch and the engine: only where work is sent or done

        return tasks

    def submit(self, db: Database, job_id: int) -> None:
        """Send a stored, queued job to the pool."""
        self._tasks().submit(db, job_id)

    def cancel(self, db: Database, job_id: int) -> None:
        """Cancel a job: no unit is claimed after this; its queued messages are revoked."""
        self._tasks().cancel(db, job_id)

    def status(self) -> str:
        """Whether the broker answers: "ok", or why not."""
        client = redis.Redis.from_url(
            self.settings.broker_url,
            socket_timeout=BROKER_PING_SECONDS,
            socket_connect_timeout=BROKER_PING_SECONDS,
        )
        try:
            client.ping()
        except redis.RedisError as error:
            return f"unreachable: {type(error).__name__}"
        finally:
            client.close()
        return "ok"

    def run_worker(self, arguments: list[str]) -> None:
        """Run a Celery worker in this process (until it is stopped) with `arguments`."""
        self._tasks().app.worker_main(["worker", *arguments])


class InProcessPool:
    """Runs submitted jobs one at a time in a daemon thread of this process, with the in-process
    runner: a pool for one local user, with no broker and no workers. Stopping the process
    stops the job under way; `ridgerider resume` goes on with it."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._submitted: queue.SimpleQueue[tuple[Database, int]] = queue.SimpleQueue()
        threading.Thread(target=self._work, name="ridgerider-jobs", daemon=True).start()

    def submit(self, db: Database, job_id: int) -> None:
        self._submitted.put((db, job_id))

    def _work(self) -> None:
        while True:
            db, job_id = self._submitted.get()
            try:
                run_job(db, self.store, job_id)
            except StartError:
                pass  # the job is failed already, with the reason
            except Exception as error:  # nobody waits for this thread: the job records the error
                log.exception("job %s failed", job_id)
                with db.session() as session:
                    fail_job(session, job_id, f"{type(error).__name__}: {error}")

    def cancel(self, db: Database, job_id: int) -> None:
        with db.session() as session:
            cancel_job(session, job_id)

    def status(self) -> str:
        return "ok"
