"""This process as a job pool: the local dashboard's (`ridgerider dashboard`), with no broker."""

from __future__ import annotations

import logging
import queue
import threading

from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import cancel_job, fail_job
from workers.local import run_job
from workers.steps import StartError

log = logging.getLogger(__name__)


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
