"""What the command line's modules share: consoles, options, errors, opening the database."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from typer.core import TyperGroup

from api.backends import Backend, LocalBackend, RemoteBackend
from api.client import Client, ClientError
from ridgerider.problems.parameters import UnknownProblemError
from storage.artifacts import CorruptArtifactError, LocalArtifactStore
from storage.database import Database
from storage.filters import FilterError
from storage.jobs import JobNotFoundError
from storage.queries import QueryError
from storage.schema import SchemaOutdatedError, ensure_schema
from storage.solutions import SolutionNotFoundError
from workers.pool import Pool
from workers.settings import Settings, SettingsError, load_settings

console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite path (env RIDGERIDER_DATABASE_URL; default ./ridgerider.db).",
    ),
]
ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        help="Artifact folder (env RIDGERIDER_ARTIFACTS; default ./ridgerider-artifacts).",
        file_okay=False,
    ),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        help="Redis broker URL of the worker pool, e.g. redis://host:6379/0 "
        "(env RIDGERIDER_BROKER_URL)."
    ),
]
JobArgument = Annotated[int, typer.Argument(min=1, help="The job id.")]
WhereOption = Annotated[
    str | None,
    typer.Option("--filter", help="e.g. 'test_accuracy > 0.95 and sharpness < 20'."),
]


JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}
USER_ERRORS = (
    OSError,
    DBAPIError,
    CorruptArtifactError,
    FilterError,
    QueryError,
    JobNotFoundError,
    SolutionNotFoundError,
    UnknownProblemError,
    SchemaOutdatedError,
    ClientError,
)


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class TextFormat(StrEnum):
    """The formats of a command whose output has no CSV form: a job's status, the jobs."""

    table = "table"
    json = "json"


def settings_of(**flags: Any) -> Settings:
    """The settings from the environment and the flags given (exit 2 naming a bad variable)."""
    try:
        return load_settings(**flags)
    except SettingsError as error:
        fail(str(error))


def open_database(settings: Settings) -> tuple[Database, LocalArtifactStore]:
    """The database (created if empty, checked against this version's schema) and the store."""
    try:
        db = Database(settings.database_url)
        ensure_schema(db)
    except (SchemaOutdatedError, SQLAlchemyError, ValueError) as error:
        fail(str(error).splitlines()[0] if isinstance(error, SQLAlchemyError) else str(error))
    return db, LocalArtifactStore(settings.artifacts)


ServerOption = Annotated[
    str | None,
    typer.Option(
        help="A ridgerider server's URL: work against it instead of the local database "
        "(env RIDGERIDER_SERVER)."
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="The API key for --server (env RIDGERIDER_API_KEY)."),
]


def client(settings: Settings) -> Client:
    """The client of `settings.server`, with its key."""
    if not settings.server:
        fail("give --server (or RIDGERIDER_SERVER)")
    if settings.api_key is None:
        fail("give --key (or RIDGERIDER_API_KEY): the server needs an API key")
    return Client(settings.server, settings.api_key.get_secret_value())


def backend(settings: Settings, database_flag: str | None) -> Backend:
    """The server `settings` name, else the local database (`--db`, refused with a server)."""
    if settings.server:
        if database_flag:
            fail("--db and --server (or RIDGERIDER_SERVER) are both given: choose one")
        return RemoteBackend(client(settings))
    db, store = open_database(settings)
    return LocalBackend(db, store, Pool(settings))


def describe_progress(job_id: int, counts: dict[str, int]) -> str:
    """A job's progress in a line: points, minima, rides, branch points, units to go, HVPs."""
    return (
        f"job {job_id}: {counts['nodes']} points, {counts['minima']} minima, "
        f"{counts['rides']} rides, {counts.get('branch_points', 0)} branch points, "
        f"{counts['outstanding']} to go, {counts['hvps']:,} HVPs"
    )


class JobProgress:
    """A running job's progress on `console` (stderr): rich's live line where that is a
    terminal; elsewhere (a pipe, a log, CI, `make` without a terminal) plain lines, as pip and
    pytest print them: one when the first counts come, then one every `every` seconds while the
    job runs (a long step still shows time passing), and one when it ends."""

    def __init__(self, job_id: int, every: float, console: Console = errors) -> None:
        self.job_id = job_id
        self.every = every
        self.console = console
        self.counts: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = self._last = time.monotonic()
        self._bar: Progress | None = None
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> JobProgress:
        self._started = self._last = time.monotonic()
        if self.console.is_terminal:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"job {self.job_id}: starting", total=None)
        else:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def update(self, counts: dict[str, int]) -> None:
        """The job's latest counts (`storage.progress.counts`); the first are printed at once."""
        if self._bar is not None:
            self._bar.update(self._task, description=describe_progress(self.job_id, counts))
            return
        with self._lock:
            first, self.counts = self.counts is None, counts
            if first:
                self._line()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Stop; on success, the last line (the counts the job ended with)."""
        if self._bar is not None:
            self._bar.stop()
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if kind is None and self.counts is not None:
            with self._lock:
                self._line()

    def _tick(self) -> None:
        """A line whenever `every` seconds have passed since the last one, until stopped."""
        while not self._stop.wait(max(0.0, self._last + self.every - time.monotonic())):
            with self._lock:
                if time.monotonic() - self._last >= self.every:
                    self._line()

    def _line(self) -> None:
        """Print the progress line now (the caller holds the lock)."""
        self._last = time.monotonic()
        if self.counts is None:
            what = f"job {self.job_id}: starting"
        else:
            what = describe_progress(self.job_id, self.counts)
        seconds = self._last - self._started
        self.console.print(f"{what}, {seconds:.1f} s", highlight=False, soft_wrap=True)


def where(db: Database) -> str:
    return db.url.render_as_string(hide_password=True)


def read_spec(path: Path) -> dict:
    """The fields of a search spec file: a TOML table, or a JSON object (fails otherwise)."""
    try:
        text = path.read_text(encoding="utf-8")
        fields = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError as error:
        fail(f"cannot read {path}: not UTF-8 text (at byte {error.start})")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        fail(f"cannot read {path}: {error}")
    if not isinstance(fields, dict):
        kind = JSON_KINDS.get(type(fields), type(fields).__name__)
        fail(f'cannot read {path}: a spec is a JSON object, e.g. {{"problem": ...}}, not {kind}')
    return fields


def describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "spec"
        lines.append(f"  {field}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def fail(message: str) -> NoReturn:
    """Print `message` as the error (verbatim, never as markup) and exit with code 2."""
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def explain(error: Exception) -> str:
    """What went wrong, in a line: the database's own words, or the file and the system's."""
    if isinstance(error, DBAPIError):
        return f"database error: {str(error.orig).splitlines()[0]}"
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.strerror}: {error.filename}"
    return str(error)


class ReportingGroup(TyperGroup):
    """The command group that turns the errors a user can act on (a bad path, query or cursor,
    damaged artifacts, a database that refuses a statement), from any command, into `fail`'s one
    line and exit code 2. Anything else is a bug: it keeps its traceback and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # output piped into a closed reader: left to click, as before
        except USER_ERRORS as error:
            fail(explain(error))
