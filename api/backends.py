"""Where the command line's job commands act: the database (`LocalBackend`) or a ridgerider
server (`RemoteBackend`), behind one protocol, so that each command is written once.

Both raise the errors `cli_common.USER_ERRORS` turns into one line and exit code 2: an unknown
job, a bad filter or query, a server's refusal."""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from api.client import Client
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.export import check_destination, deliver, export
from storage.jobs import cancel_job, get_job
from storage.progress import counts
from storage.queries import Page, SolutionRow, solution_rows, solutions_page
from storage.report import job_summary
from storage.selection import Choice, choose, parse_objectives
from workers.pool import Pool

if TYPE_CHECKING:
    from ridgerider.problems.base import Problem


@dataclass(frozen=True)
class Chosen:
    """A choice's solutions and how they were chosen; `set_metrics` are the set's ensemble
    metrics (None from a server, whose select evaluates no model)."""

    selection: str
    solutions: list[SolutionRow]
    set_metrics: dict[str, float] | None


class Backend(Protocol):
    def status(self, job_id: int) -> dict[str, Any]:
        """The job's summary with its `progress` counts."""

    def cancel(self, job_id: int) -> None:
        """Stop the job: nothing more starts; what it found is kept."""

    def solutions(
        self, job_id: int, where: str | None, sort: str, limit: int, cursor: str | None
    ) -> Page:
        """A page of the job's solutions passing `where`, sorted by `sort`."""

    def select(self, job_id: int, choice: Choice) -> Chosen: ...

    def export(self, job_id: int, destination: Path, choice: Choice) -> int:
        """Write the chosen solutions' export to `destination` (a new folder, or a path ending
        .tar.gz); returns how many solutions it holds."""


@dataclass(frozen=True)
class LocalBackend:
    """The database and artifact store; cancelling a pooled job goes through `pool`."""

    db: Database
    store: LocalArtifactStore
    pool: Pool

    def status(self, job_id: int) -> dict[str, Any]:
        with self.db.session(readonly=True) as session:
            return job_summary(get_job(session, job_id)) | {"progress": counts(session, job_id)}

    def cancel(self, job_id: int) -> None:
        with self.db.session(readonly=True) as session:
            pooled = get_job(session, job_id).enqueued_at is not None
        if pooled:
            self.pool.cancel(self.db, job_id)
        else:
            with self.db.session() as session:
                cancel_job(session, job_id)

    def solutions(
        self, job_id: int, where: str | None, sort: str, limit: int, cursor: str | None
    ) -> Page:
        with self.db.session(readonly=True) as session:
            get_job(session, job_id)
            return solutions_page(
                session, job_id, where=where, sort=sort, limit=limit, cursor=cursor
            )

    def _choose(self, job_id: int, choice: Choice) -> tuple[list[int], str, str]:
        with self.db.session(readonly=True) as session:
            problem = get_job(session, job_id).problem
            ids, how = choose(session, job_id, choice)
        return ids, how, problem

    def _ensemble(
        self, job_id: int, ids: list[int], problem_name: str
    ) -> tuple[Problem, dict[str, float]]:
        """The job's problem and the ensemble metrics of its solutions `ids`: the models run, so
        torch and the engine load here, not when the command line starts."""
        from ridgerider.problems.registry import load
        from workers.evaluation import ensemble_metrics

        problem = load(problem_name)
        return problem, ensemble_metrics(self.db, self.store, job_id, ids, problem) if ids else {}

    def select(self, job_id: int, choice: Choice) -> Chosen:
        ids, how, problem = self._choose(job_id, choice)
        with self.db.session(readonly=True) as session:
            rows = solution_rows(session, ids)
        _, ensemble = self._ensemble(job_id, ids, problem) if ids else (None, {})
        return Chosen(how, rows, ensemble)

    def export(self, job_id: int, destination: Path, choice: Choice) -> int:
        ids, how, name = self._choose(job_id, choice)
        problem, ensemble = self._ensemble(job_id, ids, name)
        objectives = None
        if choice.pareto and len(parse_objectives(choice.pareto)) >= 2:
            objectives = tuple(o.name for o in parse_objectives(choice.pareto)[:2])
        export(
            self.db,
            self.store,
            job_id,
            destination,
            problem,
            ids=ids,
            selection=how,
            objectives=objectives,
            set_metrics=ensemble,
        )
        return len(ids)


@dataclass(frozen=True)
class RemoteBackend:
    """A ridgerider server, through its HTTP API."""

    client: Client

    def status(self, job_id: int) -> dict[str, Any]:
        return self.client.job(job_id)

    def cancel(self, job_id: int) -> None:
        self.client.cancel(job_id)

    def solutions(
        self, job_id: int, where: str | None, sort: str, limit: int, cursor: str | None
    ) -> Page:
        page = self.client.solutions(job_id, filter=where, sort=sort, limit=limit, cursor=cursor)
        rows = [SolutionRow.from_json(s) for s in page["solutions"]]
        return Page(rows, page["next_cursor"])

    def select(self, job_id: int, choice: Choice) -> Chosen:
        body: dict[str, Any] = {"diverse": choice.diverse, "filter": choice.where}
        if choice.pareto:
            objectives = parse_objectives(choice.pareto)
            body["pareto"] = [{"name": o.name, "direction": o.direction} for o in objectives]
        chosen = self.client.select(job_id, body)
        rows = [SolutionRow.from_json(s) for s in chosen["solutions"]]
        return Chosen(chosen["selection"], rows, None)

    def export(self, job_id: int, destination: Path, choice: Choice) -> int:
        """Download the archive; a destination not ending in .tar.gz is a folder to unpack
        into."""
        check_destination(destination)
        query = {"pareto": choice.pareto, "diverse": choice.diverse, "filter": choice.where}
        with tempfile.TemporaryDirectory() as folder:
            archive = Path(folder) / "export.tar.gz"
            if destination.name.endswith(".tar.gz"):
                archive = destination
            self.client.export(job_id, archive, **query)
            with tarfile.open(archive) as tar:
                names = tar.getnames()
                if archive != destination:
                    tar.extractall(folder, filter="data")
                    (unpacked,) = [p for p in Path(folder).iterdir() if p.is_dir()]
                    deliver(unpacked, destination)
        return sum(Path(name).parent.name == "weights" and "solution-" in name for name in names)
