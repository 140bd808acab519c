"""The `ridgerider` command line.

The commands that search (`run`, `resume`, `spectrum`, `problems`) import torch and the engine
where they start; the commands that read or manage stored results start without them, about
two seconds sooner (`python bench/cli_start.py`)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from api.cli_common import (
    ArtifactsOption,
    BrokerOption,
    DbOption,
    Format,
    JobArgument,
    JobProgress,
    KeyOption,
    ReportingGroup,
    ServerOption,
    TextFormat,
    WhereOption,
    backend,
    console,
    describe,
    errors,
    fail,
    open_database,
    read_spec,
    settings_of,
    where,
)
from api.cli_mlflow import commands as mlflow_commands
from api.cli_server import commands, keys_app
from api.render import cell, jobs_table, print_report, print_rows, print_status
from ridgerider import __version__
from ridgerider.problems.parameters import UnknownProblemError, declared, defaults
from storage.artifacts import LocalArtifactStore
from storage.database import Database
from storage.jobs import create_job, get_job
from storage.keys import LOCAL_OWNER
from storage.models import JOB_ENDED
from storage.progress import counts
from storage.queries import MAX_PAGE, list_jobs, solutions_page
from storage.report import job_document, job_summary
from storage.schema import current_revision, head_revision
from storage.schema import upgrade as upgrade_schema
from storage.selection import Choice
from workers.pool import Pool

if TYPE_CHECKING:
    import torch

app = typer.Typer(
    cls=ReportingGroup,
    help="Ridge Rider: find many genuinely different minima of a loss.",
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print keys or passwords
)
ThreadsOption = Annotated[
    int,
    typer.Option(
        min=1,
        max=256,
        help="torch threads for the in-process search. One is the default: the built-in "
        "problems are small, and two threads on cores that are busy with anything else made "
        "a search 12x slower (idle threads spin).",
    ),
]
WAIT_POLL_SECONDS = 0.5


class Point(StrEnum):
    zero = "zero"
    saddle = "saddle"
    random = "random"


class Which(StrEnum):
    SA = "SA"
    LA = "LA"


def _version(value: bool) -> None:
    if value:
        import torch

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
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--problem my_problems:camel` from its folder


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
    import torch

    from ridgerider.linalg import HessianOperator, eigsh
    from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split, zero_point
    from ridgerider.problems.invariant import maximally_invariant_point

    data = digits_split()
    model = digits_mlp(hidden)
    loss = digits_loss(model, data)
    if point is Point.zero:
        theta = zero_point(model, data)
    elif point is Point.saddle:
        theta = maximally_invariant_point(model, loss, seed=seed)
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
    threads: ThreadsOption = 1,
) -> None:
    """Run a Ridge Rider search, store it, and report the distinct minima found: in-process,
    or on the worker pool when a broker is given (--broker or RIDGERIDER_BROKER_URL)."""
    import torch

    from ridgerider.problems.registry import load
    from ridgerider.search import SearchSpec

    torch.set_num_threads(threads)
    fields = read_spec(spec) if spec else {}
    if problem is not None:
        fields["problem"] = problem
    try:
        search_spec = SearchSpec(**fields)
        load(search_spec.problem)
    except ValidationError as error:
        fail("invalid search spec:\n" + describe(error))
    except (UnknownProblemError, ValueError, TypeError) as error:
        fail(str(error))
    settings = settings_of(database_url=db_url, artifacts=artifacts, broker_url=broker)
    pooled = "broker_url" in settings.model_fields_set
    db, store = open_database(settings)
    with db.session() as session:
        job_id = create_job(session, search_spec.model_dump(), owner=LOCAL_OWNER).id
    runner = f"on the pool at {settings.broker_url}" if pooled else "in-process"
    errors.print(
        f"job {job_id}: {search_spec.problem}, {runner}, stored in {where(db)}", highlight=False
    )
    if not pooled:
        _run_in_process(db, store, job_id, settings.progress_every)
    else:
        try:
            Pool(settings).submit(db, job_id)
        except Exception as error:  # whatever the broker raises: say so, exit 2
            fail(f"cannot reach the broker at {settings.broker_url}: {error}")
        if no_wait:
            print(job_id)
            return
        _wait(db, job_id, settings.progress_every)
    _report(db, store, job_id, as_json)


@app.command()
def resume(
    job: JobArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    threads: ThreadsOption = 1,
) -> None:
    """Go on with an interrupted in-process job: nothing it recorded is lost or redone."""
    import torch

    torch.set_num_threads(threads)
    settings = settings_of(database_url=db_url, artifacts=artifacts)
    db, store = open_database(settings)
    with db.session(readonly=True) as session:
        status = get_job(session, job).status
    if status in JOB_ENDED:
        fail(f"job {job} is {status}; there is nothing to resume")
    _run_in_process(db, store, job, settings.progress_every)
    _report(db, store, job, as_json)


def _run_in_process(db: Database, store: LocalArtifactStore, job_id: int, every: float) -> None:
    """Run the job here, showing its progress (plain lines every `every` s off a terminal)."""
    from workers.local import run_job
    from workers.steps import StartError

    with JobProgress(job_id, every) as progress:
        try:
            run_job(db, store, job_id, on_progress=progress.update)
        except (StartError, UnknownProblemError, ValueError) as error:
            fail(str(error))


def _wait(db: Database, job_id: int, every: float) -> None:
    """Follow a pool job in the database until it ends (Ctrl-C stops watching, not the job)."""
    try:
        with JobProgress(job_id, every) as progress:
            while True:
                with db.session(readonly=True) as session:
                    job = get_job(session, job_id)
                    progress.update(counts(session, job_id))
                if job.status in JOB_ENDED:
                    break
                time.sleep(WAIT_POLL_SECONDS)
    except KeyboardInterrupt:
        errors.print(f"job {job_id} goes on in the pool: `ridgerider status {job_id}`")
        raise typer.Exit(130) from None
    if job.status == "failed":
        fail(f"job {job_id} failed: {job.error}")


def _report(db: Database, store: LocalArtifactStore, job_id: int, as_json: bool) -> None:
    with db.session(readonly=True) as session:
        document = job_document(session, store, job_id)
        rows = solutions_page(session, job_id, limit=MAX_PAGE).items
    if as_json:
        print(json.dumps(document))
    else:
        print_report(console, rows, document)


@app.command()
def problems() -> None:
    """The registered problems (`--problem name:key=value,...`) and their parameters' ranges."""
    from ridgerider.problems.registry import registered

    table = Table(title="problems: --problem name:key=value,...")
    for column in ("problem", "parameter", "default", "allowed", "meaning"):
        table.add_column(column)
    for name, factory in sorted(registered().items()):
        schema = declared(factory) or {}
        parameters = defaults(factory)
        if not parameters:
            table.add_row(escape(name), "", "", "", "no parameters")
        for key, default in parameters.items():
            known = schema.get(key)
            cells = (
                name,
                key,
                repr(default),
                known.allowed if known else "",
                known.help if known else "",
            )
            table.add_row(*(escape(c) for c in cells))  # ranges like [1, 4] are not markup
            name = ""
        table.add_section()
    console.print(table)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    output: Annotated[
        TextFormat, typer.Option("--format", help="table or json.")
    ] = TextFormat.table,
    db_url: DbOption = None,
) -> None:
    """The stored jobs, newest first."""
    db, _ = open_database(settings_of(database_url=db_url))
    with db.session(readonly=True) as session:
        listed = [
            job_summary(job) | {"minima": (job.stats or {}).get("solutions", "-")}
            for job in list_jobs(session, status=status, limit=limit)
        ]
    if output is TextFormat.json:
        print(json.dumps(listed))
    else:
        console.print(jobs_table(listed))


@app.command()
def solutions(
    job: JobArgument,
    where: WhereOption = None,
    sort: Annotated[str, typer.Option(help="A metric or attribute; -name for descending.")] = "id",
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page, from the last page.")] = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    db_url: DbOption = None,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """A job's solutions: filtered, sorted, one page at a time."""
    settings = settings_of(database_url=db_url, server=server, api_key=key)
    page = backend(settings, db_url).solutions(job, where, sort, limit, cursor)
    print_rows(console, page.items, output, f"solutions of job {job}", page.next_cursor)


@app.command()
def select(
    job: JobArgument,
    pareto: Annotated[
        str | None, typer.Option(help="Objectives, e.g. 'test_accuracy:max,sharpness:min'.")
    ] = None,
    diverse: Annotated[
        int | None, typer.Option(min=1, max=1000, help="K most mutually disagreeing solutions.")
    ] = None,
    where: WhereOption = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """Choose solutions: the Pareto front over objectives, or a diverse top-k; with the chosen
    set's ensemble metrics (locally; a server's select evaluates no model)."""
    settings = settings_of(database_url=db_url, artifacts=artifacts, server=server, api_key=key)
    chosen = backend(settings, db_url).select(job, Choice(pareto, diverse, where))
    if output is Format.json:
        print(json.dumps(asdict(chosen)))
        return
    print_rows(console, chosen.solutions, output, f"{chosen.selection} of job {job}", None)
    if output is Format.table and chosen.set_metrics:
        console.print(
            "set: "
            + ", ".join(f"{k.replace('_', ' ')} {cell(v)}" for k, v in chosen.set_metrics.items())
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
    where: WhereOption = None,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """Export a job's solutions as an MLOps artifact: model card, metrics CSV, lineage GraphML
    and JSON, weights with hashes, plots."""
    settings = settings_of(database_url=db_url, artifacts=artifacts, server=server, api_key=key)
    exported = backend(settings, db_url).export(job, destination, Choice(pareto, diverse, where))
    console.print(f"exported {exported} solutions of job {job} to {destination}")


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to take tasks from (ridgerider, gpu).")
    ] = "ridgerider",
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            max=256,
            show_default=False,
            help="Worker processes (default: this machine's CPU cores).",
        ),
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
    settings = settings_of(database_url=db_url, artifacts=artifacts, broker_url=broker)
    open_database(settings)[0].dispose()
    Pool(settings).run_worker(
        [
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
def cancel(
    job: JobArgument,
    db_url: DbOption = None,
    broker: BrokerOption = None,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """Cancel a job: nothing more is started, what it found so far is kept."""
    settings = settings_of(database_url=db_url, broker_url=broker, server=server, api_key=key)
    chosen = backend(settings, db_url)
    chosen.cancel(job)
    status = chosen.status(job)["status"]
    if status in ("finished", "failed"):
        console.print(f"job {job} is {status}: there is nothing to cancel")
    else:
        console.print(f"job {job}: cancel requested (now {status})")


@app.command()
def status(
    job: JobArgument,
    output: Annotated[
        TextFormat, typer.Option("--format", help="table or json.")
    ] = TextFormat.table,
    db_url: DbOption = None,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """A job's status and progress."""
    settings = settings_of(database_url=db_url, server=server, api_key=key)
    print_status(console, backend(settings, db_url).status(job), output)


db_app = typer.Typer(help="The database's schema.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(commands)
app.add_typer(mlflow_commands)


@db_app.command()
def upgrade(db_url: DbOption = None) -> None:
    """Apply the schema migrations this version ships (safe to run again)."""
    try:
        database = Database(settings_of(database_url=db_url).database_url)
        before = current_revision(database)
        upgrade_schema(database)
    except (SQLAlchemyError, ValueError) as error:
        fail(str(error).splitlines()[0])
    console.print(f"{where(database)}: schema {before or 'empty'} -> {head_revision()}")
