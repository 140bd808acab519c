"""The worker pool as the API and the command line use it: one object, built from the
settings, that submits and cancels jobs, says whether the broker answers, and runs a worker."""

from __future__ import annotations

from types import ModuleType

import redis

from storage.database import Database
from workers import celery_app
from workers.settings import Settings

BROKER_PING_SECONDS = 2


class Pool:
    """The pool behind `settings.broker_url`. The Celery app is configured on first use (one
    pool per process: the app is the process's)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _tasks(self) -> ModuleType:
        if getattr(celery_app.app, "ridgerider_settings", None) != self.settings:
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
        """ "ok" if the broker answers, else why not."""
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
