"""Where the API sends jobs: the worker pool (`Pool`, built from the settings: submits and
cancels jobs, says whether the broker answers, runs a worker), or this process
(`workers.in_process.InProcessPool`, the local dashboard's). Celery, torch and the engine
load only where a job is sent or cancelled, Redis's client where the broker is pinged, so
that the commands that read stored results start without them."""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

from storage.database import Database
from workers.settings import Settings

BROKER_PING_SECONDS = 2


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
        from workers import celery_app  # celery, then torch and the engine: where work is

        celery_app.configure(self.settings)
        from workers import tasks

        return tasks

    def submit(self, db: Database, job_id: int) -> None:
        """Send a stored, queued job to the pool."""
        self._tasks().submit(db, job_id)

    def cancel(self, db: Database, job_id: int) -> None:
        """Cancel a job: no unit is claimed after this; its queued messages are revoked."""
        self._tasks().cancel(db, job_id)

    def status(self) -> str:
        """Whether the broker answers: "ok", or why not."""
        import redis  # the broker's client: only where it is asked

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
