"""Export archives built off the request path: in a process of their own (one per server
process, started on the first export), so that plots and archives hold neither the GIL nor
the threads that other requests need; a bounded number wait their turn (429 beyond)."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from api.limits import too_many
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.export import export


def _build(
    db_url: str, artifacts: str, job_id: int, destination: str, ids: list[int], selection: str
) -> str:
    db = Database(db_url)
    try:
        return str(
            export(
                db,
                LocalArtifactStore(artifacts),
                job_id,
                Path(destination),
                ids=ids,
                selection=selection,
            )
        )
    finally:
        db.dispose()


class ExportRunner:
    """Builds exports one at a time in a child process; at most `most_waiting` queue."""

    def __init__(self, most_waiting: int) -> None:
        self.most_waiting = most_waiting
        self.waiting = 0
        self._pool: ProcessPoolExecutor | None = None

    async def build(
        self,
        db: Database,
        store: LocalArtifactStore,
        job_id: int,
        destination: Path,
        ids: list[int],
        selection: str,
    ) -> Path:
        """`storage.export.export` in the export process; its errors are raised here.

        Raises:
            ProblemError: 429 when `most_waiting` exports are queued already.
        """
        if self.waiting >= self.most_waiting:
            raise too_many(f"{self.waiting} exports are queued on this server; retry soon", 10)
        if self._pool is None:  # spawned, not forked: the server has threads and a loop
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        url = db.url.render_as_string(hide_password=False)
        self.waiting += 1
        try:
            built = await asyncio.get_running_loop().run_in_executor(
                self._pool, _build, url, str(store.root), job_id, str(destination), ids, selection
            )
        finally:
            self.waiting -= 1
        return Path(built)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
