"""The `ridgerider` command line."""

from __future__ import annotations

import json
import os
import time
import tomllib
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, NoReturn

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.render import cell, jobs_table, print_report, solutions_csv, solutions_table
from ridgerider import __version__
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.digits import (
    digits_loss,
    digits_mlp,
    digits_split,
    symmetric_saddle,
    zero_point,
)
from ridgerider.problems.registry import UnknownProblemError, load
from ridgerider.search import SearchSpec
from storage.artifacts import ARTIFACTS_ENV, LocalArtifactStore
from storage.database import DATABASE_URL_ENV, Database
from storage.export import export
from storage.filters import FilterError
from storage.jobs import JobNotFoundError, cancel_job, counts, create_job, get_job
from storage.models import Job
from storage.queries import (
    MAX_PAGE,
    QueryError,
    SolutionRow,
    list_jobs,
    metric_matrix,
    solutions_page,
)
from storage.report import job_document, job_summary
from storage.schema import (
    SchemaOutdatedError,
    current_revision,
    ensure_schema,
    head_revision,
)
from storage.schema import upgrade as upgrade_schema
from storage.selection import diverse_top_k, pareto_front, parse_objectives
from storage.solutions import ensemble_metrics
from workers.local import run_job
from workers.settings import BROKER_URL_ENV, DEFAULT_BROKER_URL
from workers.steps import StartError

app = typer.Typer(help="Ridge Rider: find many genuinely different minima of a loss.")
console = Console()
errors = Console(stderr=True)


class Point(StrEnum):
    zero = "zero"
    saddle = "saddle"
    random = "random"


class Which(StrEnum):
    SA = "SA"
    LA = "LA"


def _version(value: bool) -> None:
    if value:
        console.print(f"ridgerider {__version__} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Ridge Rider: find many genuinely different minima of a loss."""


@app.command()
def spectrum(
    hidden: Annotated[
        int, typer.Option(min=1, max=4096, help="Hidden units of the 64-H-10 tanh MLP.")
    ] = 8,
    point: Annotated[Point, typer.Option(help="Where to take the Hessian.")] = Point.zero,
    k: Annotated[int, typer.Option("-k", min=1, max=512, help="How many eigenpairs.")] = 8,
    which: Annotated[Which, typer.Option(help="SA: most negative; LA: largest.")] = Which.SA,
    tol: Annotated[
        float, typer.Option(min=1e-14, max=0.1, help="Residual tolerance relative to ||H||.")
    ] = 1e-8,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seeds the random point and start vectors.")] = 0,
) -> None:
    """The extreme Hessian eigenpairs of the digits MLP, from Hessian-vector products."""
    data = digits_split()
    model = digits_mlp(hidden)
    loss = digits_loss(model, data)
    if point is Point.zero:
        theta = zero_point(model, data)
    elif point is Point.saddle:
        theta = symmetric_saddle(loss, hidden, seed=seed)
    else:
        generator = torch.Generator().manual_seed(seed)
        theta = 0.5 * torch.randn(sum(p.numel() for p in model.parameters()), generator=generator)
        theta = theta.double()
    if device != "cpu":
        data, model = data.to(device), model.to(device)
        loss = digits_loss(model, data)
    n = theta.numel()
    if k > n:
        raise typer.BadParameter(f"must be in [1, {n}] (the number of parameters)", param_hint="-k")
    start = time.perf_counter()
    values, _, info = eigsh(
        HessianOperator(loss, theta.to(device)), k, which.value, tol=tol, seed=seed
    )
    seconds = time.perf_counter() - start

    table = Table(title=f"64-{hidden}-10 tanh MLP on digits, {point.value} point, n = {n}")
    for column in ("eigenvalue", "multiplicity", "max residual / ||H||"):
        table.add_column(column, justify="right")
    for value, members in _groups(values.cpu(), info.residuals, tol * info.anorm):
        worst = max(info.residuals[i].item() for i in members) / info.anorm
        table.add_row(f"{value:.6f}", str(len(members)), f"{worst:.1e}")
    console.print(table)
    converged = int(info.converged.sum())
    console.print(
        f"{converged}/{k} converged, {info.matvecs} Hessian-vector products, "
        f"{info.restarts} restarts, {seconds:.2f} s on {device}"
    )


def _groups(
    values: torch.Tensor, residuals: torch.Tensor, spread: float
) -> list[tuple[float, list[int]]]:
    """Eigenvalues grouped into runs that agree to within the solve's accuracy."""
    groups: list[tuple[float, list[int]]] = []
    for i, value in enumerate(values.tolist()):
        if groups and abs(value - groups[-1][0]) <= 10 * spread + 10 * residuals[i].item():
            groups[-1][1].append(i)
        else:
            groups.append((value, [i]))
    return groups


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=DATABASE_URL_ENV,
        help="Database URL or SQLite path [default: ./ridgerider.db].",
        show_envvar=True,
    ),
]
ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        envvar=ARTIFACTS_ENV,
        help="Artifact folder [default: ./ridgerider-artifacts].",
        show_envvar=True,
        file_okay=False,
    ),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        envvar=BROKER_URL_ENV,
        help="Redis broker URL of the worker pool, e.g. redis://host:6379/0.",
        show_envvar=True,
    ),
]
JobArgument = Annotated[int, typer.Argument(min=1, help="The job id.")]
WAIT_POLL_SECONDS = 0.5
FilterOption = Annotated[
    str | None,
    typer.Option("--filter", help="e.g. 'test_accuracy > 0.95 and sharpness < 20'."),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _open(db_url: str | None, artifacts: Path | None) -> tuple[Database, LocalArtifactStore]:
    """The database (created if empty, checked against this version's schema) and the store."""
    try:
        db = Database(db_url)
        ensure_schema(db)
    except (SchemaOutdatedError, SQLAlchemyError, ValueError) as error:
        _fail(str(error).splitlines()[0] if isinstance(error, SQLAlchemyError) else str(error))
    return db, LocalArtifactStore(artifacts)


@app.command()
def run(
    problem: Annotated[
        str | None,
        typer.Option(help="NAME[:key=value,...] of a registered problem, or module:factory."),
    ] = None,
    spec: Annotated[
        Path | None, typer.Option(help="A search spec, TOML or JSON.", exists=True, dir_okay=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    broker: BrokerOption = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="With --broker: print the job id and return.")
    ] = False,
) -> None:
    """Run a Ridge Rider search, store it, and report the distinct minima found: in-process,
    or on the worker pool when a broker is given (--broker or RIDGERIDER_BROKER_URL)."""
    fields = _read_spec(spec) if spec else {}
    if problem is not None:
        fields["problem"] = problem
    try:
        search_spec = SearchSpec(**fields)
        load(search_spec.problem)
    except ValidationError as error:
        _fail("invalid search spec:\n" + _describe(error))
    except (UnknownProblemError, ValueError, TypeError) as error:
        _fail(str(error))
    db, store = _open(db_url, artifacts)
    with db.session() as session:
        job_id = create_job(session, search_spec.model_dump()).id
    where = f"on the pool at {broker}" if broker else "in-process"
    errors.print(
        f"job {job_id}: {search_spec.problem}, {where}, stored in {_where(db)}", highlight=False
    )
    if not broker:
        _run_in_process(db, store, job_id)
    else:
        tasks = _pool(broker)
        try:
            tasks.submit(db, job_id)
        except Exception as error:
            _fail(f"cannot reach the broker at {broker}: {error}")
        if no_wait:
            print(job_id)
            return
        _wait(db, job_id)
    _report(db, store, job_id, as_json)


@app.command()
def resume(
    job: JobArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Go on with an interrupted in-process job: nothing it recorded is lost or redone."""
    db, store = _open(db_url, artifacts)
    with db.session(readonly=True) as session:
        status = _job(session, job).status
    if status in ("finished", "failed", "cancelled"):
        _fail(f"job {job} is {status}; there is nothing to resume")
    _run_in_process(db, store, job)
    _report(db, store, job, as_json)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )


def _describe_progress(job_id: int, counts: dict[str, int]) -> str:
    return (
        f"job {job_id}: {counts['rides']} rides, {counts['minima']} minima, "
        f"{counts['outstanding']} to go, {counts['hvps']:,} HVPs"
    )


def _run_in_process(db: Database, store: LocalArtifactStore, job_id: int) -> None:
    with _progress() as progress:
        task = progress.add_task(f"job {job_id}", total=None)

        def on_progress(counts: dict[str, int]) -> None:
            progress.update(task, description=_describe_progress(job_id, counts))

        try:
            run_job(db, store, job_id, on_progress=on_progress)
        except (StartError, UnknownProblemError, ValueError) as error:
            _fail(str(error))


def _wait(db: Database, job_id: int) -> None:
    """Follow a pool job in the database until it ends (Ctrl-C stops watching, not the job)."""
    try:
        with _progress() as progress:
            task = progress.add_task(f"job {job_id}: queued", total=None)
            while True:
                with db.session(readonly=True) as session:
                    job = get_job(session, job_id)
                    progress.update(
                        task, description=_describe_progress(job_id, counts(session, job_id))
                    )
                if job.status in ("finished", "failed", "cancelled"):
                    break
                time.sleep(WAIT_POLL_SECONDS)
    except KeyboardInterrupt:
        errors.print(f"job {job_id} goes on in the pool: `ridgerider status {job_id}`")
        raise typer.Exit(130) from None
    if job.status == "failed":
        _fail(f"job {job_id} failed: {job.error}")


def _report(db: Database, store: LocalArtifactStore, job_id: int, as_json: bool) -> None:
    with db.session(readonly=True) as session:
        document = job_document(session, store, job_id)
        rows = solutions_page(session, job_id, limit=MAX_PAGE).items
    if as_json:
        print(json.dumps(document))
    else:
        print_report(console, rows, document)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    db_url: DbOption = None,
) -> None:
    """The stored jobs, newest first."""
    db, _ = _open(db_url, None)
    with db.session(readonly=True) as session:
        listed = [
            job_summary(job) | {"minima": (job.stats or {}).get("solutions", "-")}
            for job in list_jobs(session, status=status, limit=limit)
        ]
    if output is Format.json:
        print(json.dumps(listed))
    else:
        console.print(jobs_table(listed))


@app.command()
def solutions(
    job: JobArgument,
    filter: FilterOption = None,
    sort: Annotated[str, typer.Option(help="A metric or attribute; -name for descending.")] = "id",
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page, from the last page.")] = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    db_url: DbOption = None,
) -> None:
    """A job's solutions: filtered, sorted, one page at a time."""
    db, _ = _open(db_url, None)
    with db.session(readonly=True) as session:
        _job(session, job)
        try:
            page = solutions_page(
                session, job, filter=filter, sort=sort, limit=limit, cursor=cursor
            )
        except (FilterError, QueryError) as error:
            _fail(str(error))
    _print_rows(page.items, output, f"solutions of job {job}", page.next_cursor)


@app.command()
def select(
    job: JobArgument,
    pareto: Annotated[
        str | None, typer.Option(help="Objectives, e.g. 'test_accuracy:max,sharpness:min'.")
    ] = None,
    diverse: Annotated[
        int | None, typer.Option(min=1, max=1000, help="K most mutually disagreeing solutions.")
    ] = None,
    filter: FilterOption = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Choose solutions: the Pareto front over objectives, or a diverse top-k; with the chosen
    set's ensemble metrics."""
    db, store = _open(db_url, artifacts)
    ids, how = _choose(db, job, pareto, diverse, filter)
    with db.session(readonly=True) as session:
        rows = _rows(session, job, ids)
        problem_name = _job(session, job).problem
    ensemble = ensemble_metrics(db, store, job, ids, load(problem_name)) if ids else {}
    if output is Format.json:
        print(
            json.dumps(
                {
                    "selection": how,
                    "solutions": [r.to_json() for r in rows],
                    "set_metrics": ensemble,
                }
            )
        )
        return
    _print_rows(rows, output, f"{how} of job {job}", None)
    if output is Format.table and ensemble:
        console.print(
            "set: " + ", ".join(f"{k.replace('_', ' ')} {cell(v)}" for k, v in ensemble.items())
        )


@app.command("export")
def export_command(
    job: JobArgument,
    destination: Annotated[Path, typer.Argument(help="A new folder, or a path ending .tar.gz.")],
    pareto: Annotated[
        str | None, typer.Option(help="Export the Pareto front of these objectives.")
    ] = None,
    diverse: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Export a diverse top-k.")
    ] = None,
    filter: FilterOption = None,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Export a job's solutions as an MLOps artifact: model card, metrics CSV, lineage GraphML
    and JSON, weights with hashes, plots."""
    db, store = _open(db_url, artifacts)
    ids, how = _choose(db, job, pareto, diverse, filter)
    with db.session(readonly=True) as session:
        problem = load(_job(session, job).problem)
    objectives = None
    if pareto and len(parse_objectives(pareto)) >= 2:
        objectives = tuple(o.name for o in parse_objectives(pareto)[:2])
    try:
        written = export(
            db, store, job, destination, problem, ids=ids, selection=how, objectives=objectives
        )
    except FileExistsError as error:
        _fail(str(error))
    console.print(f"exported {len(ids)} solutions of job {job} to {written}")


def _choose(
    db: Database, job: int, pareto: str | None, diverse: int | None, filter: str | None
) -> tuple[list[int], str]:
    """The ids a selection picks, and how it was made (for tables and the model card)."""
    if pareto and diverse:
        _fail("give --pareto or --diverse, not both")
    with db.session(readonly=True) as session:
        _job(session, job)
        passing = f" among those with {filter}" if filter else ""
        try:
            if pareto:
                objectives = parse_objectives(pareto)
                ids = pareto_front(session, job, objectives, filter)
                names = ", ".join(f"{o.name} ({o.direction})" for o in objectives)
                return ids, f"the Pareto front over {names}{passing}"
            if diverse:
                ids = diverse_top_k(session, job, diverse, filter)
                return ids, f"{len(ids)} most mutually disagreeing (greedy max-min){passing}"
            ids = metric_matrix(session, job, [], filter)[0] if filter else None
            if ids is None:
                ids = [row.id for row in solutions_page(session, job, limit=MAX_PAGE).items]
            return ids, f"every solution{passing}"
        except (FilterError, QueryError) as error:
            _fail(str(error))


def _rows(session: Session, job: int, ids: list[int]) -> list[SolutionRow]:
    rows = {row.id: row for row in solutions_page(session, job, limit=MAX_PAGE).items}
    return [rows[i] for i in ids if i in rows]


def _print_rows(
    rows: list[SolutionRow], output: Format, title: str, next_cursor: str | None
) -> None:
    if output is Format.json:
        print(
            json.dumps({"solutions": [row.to_json() for row in rows], "next_cursor": next_cursor})
        )
    elif output is Format.csv:
        print(solutions_csv(rows), end="")
    else:
        console.print(solutions_table(rows, title))
        if next_cursor:
            console.print(f"more: --cursor {next_cursor}", soft_wrap=True)


def _pool(broker: str) -> ModuleType:
    """The pool's task module, configured for `broker` (Celery reads it when first imported)."""
    os.environ[BROKER_URL_ENV] = broker
    from workers import tasks

    return tasks


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to take tasks from (ridgerider, gpu).")
    ] = "ridgerider",
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Worker processes [default: CPU cores].")
    ] = os.cpu_count() or 1,
    loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "INFO",
    hostname: Annotated[
        str, typer.Option(help="The worker's name in the pool (%h is this host's name).")
    ] = "ridgerider@%h",
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    broker: BrokerOption = None,
) -> None:
    """Start a worker of the pool: Celery with late acknowledgement, one message at a time per
    process, JSON only, and a sweep that recovers lost work."""
    db, _ = _open(db_url, artifacts)
    os.environ[DATABASE_URL_ENV] = db.url.render_as_string(hide_password=False)
    if artifacts is not None:
        os.environ[ARTIFACTS_ENV] = str(artifacts.resolve())
    tasks = _pool(broker or DEFAULT_BROKER_URL)
    tasks.app.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--hostname={hostname}",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def cancel(job: JobArgument, db_url: DbOption = None, broker: BrokerOption = None) -> None:
    """Cancel a job: nothing more is started, what it found so far is kept."""
    db, _ = _open(db_url, None)
    with db.session(readonly=True) as session:
        pooled = _job(session, job).enqueued_at is not None
    if pooled:
        _pool(broker or DEFAULT_BROKER_URL).cancel(db, job)
    else:
        with db.session() as session:
            cancel_job(session, job)
    console.print(f"job {job}: cancel requested")


@app.command()
def status(
    job: JobArgument,
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    db_url: DbOption = None,
) -> None:
    """A job's status and progress."""
    db, _ = _open(db_url, None)
    with db.session(readonly=True) as session:
        summary = job_summary(_job(session, job)) | {"progress": counts(session, job)}
    if output is Format.json:
        print(json.dumps(summary))
    else:
        progress = summary["progress"]
        console.print(
            f"job {job} ({summary['problem']}): {summary['status']}; "
            f"{progress['nodes']} critical points, {progress['minima']} minima, "
            f"{progress['rides']} rides ({progress['failed_rides']} failed), "
            f"{progress['outstanding']} units to go, {summary['hvps']:,} HVPs, "
            f"{summary['seconds']:.1f} s"
            + (f"; error: {summary['error']}" if summary["error"] else "")
        )


db_app = typer.Typer(help="The database's schema.")
app.add_typer(db_app, name="db")


@db_app.command()
def upgrade(db_url: DbOption = None) -> None:
    """Apply the schema migrations this version ships (safe to run again)."""
    try:
        database = Database(db_url)
        before = current_revision(database)
        upgrade_schema(database)
    except (SQLAlchemyError, ValueError) as error:
        _fail(str(error).splitlines()[0])
    console.print(f"{_where(database)}: schema {before or 'empty'} -> {head_revision()}")


def _job(session: Session, job_id: int) -> Job:
    try:
        return get_job(session, job_id)
    except JobNotFoundError as error:
        _fail(str(error))


def _where(db: Database) -> str:
    return db.url.render_as_string(hide_password=True)


def _read_spec(path: Path) -> dict:
    text = path.read_text()
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        _fail(f"cannot read {path}: {error}")


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "spec"
        lines.append(f"  {field}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
