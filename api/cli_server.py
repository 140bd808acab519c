"""The command line's server side: `serve` the HTTP API, make API `keys`, `submit` to a server
and follow it."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.cli_common import (
    ArtifactsOption,
    BrokerOption,
    DbOption,
    JobProgress,
    KeyOption,
    ServerOption,
    client,
    console,
    errors,
    fail,
    open_database,
    read_spec,
    settings_of,
)
from api.client import Client
from api.render import print_report
from storage.jobs import adopt_unowned
from storage.keys import (
    KEY_CACHE_SECONDS,
    LOCAL_OWNER,
    KeyNameError,
    create_key,
    has_keys,
    list_keys,
    revoke_key,
)
from storage.queries import SolutionRow

commands = typer.Typer()
WORKER_HEALTHCHECK_SECONDS = 60
keys_app = typer.Typer(help="API keys for the HTTP API.")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@commands.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes (one per core is right).")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="Requests each process works on at once "
            "(env RIDGERIDER_SERVER_THREADS; default 2).",
        ),
    ] = None,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
    broker: BrokerOption = None,
    mlflow_tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="The MLflow tracking server that POST /jobs/{id}/mlflow logs to "
            "(env RIDGERIDER_MLFLOW_TRACKING_URI)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (uvicorn). Beyond loopback only once API keys exist."""
    import uvicorn  # the server: each process it starts loads the app, and the engine

    settings = settings_of(
        database_url=db_url,
        artifacts=artifacts,
        broker_url=broker,
        server_threads=threads,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    db, store = open_database(settings)
    with db.session(readonly=True) as session:
        keyed = has_keys(session)
    if not _loopback(host) and not keyed:
        fail(f"refusing to listen on {host} with no API keys: `ridgerider keys create NAME` first")
    db.dispose()
    # uvicorn starts each server process with no arguments: they read the settings from the
    # environment they inherit (absolute paths, so that no process depends on its folder).
    absolute = {"database_url": db.url.render_as_string(hide_password=False)}
    os.environ.update(
        settings.model_copy(update=absolute | {"artifacts": store.root.resolve()}).environment()
    )
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        # A process answers the supervisor's health ping only once it has imported the app
        # (torch, Celery: seconds on a busy machine); uvicorn's 5 s would kill it in a loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


@commands.command()
def dashboard(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """The web dashboard over the embedded database, on loopback, with submitted jobs run in
    this process (no broker, no workers): watch searches, choose models. Prints a new key for
    `local`, who owns the jobs run on this machine."""
    import torch  # the server, and the engine that runs the jobs in this process
    import uvicorn

    from api.app import create_app
    from api.deps import Services
    from workers.in_process import InProcessPool

    settings = settings_of(database_url=db_url, artifacts=artifacts)
    db, store = open_database(settings)
    with db.session() as session:
        revoke_key(session, LOCAL_OWNER)
        key = create_key(session, LOCAL_OWNER, local=True)
        adopt_unowned(session, LOCAL_OWNER)
    torch.set_num_threads(1)
    errors.print(
        f"dashboard: http://127.0.0.1:{port}/ - sign in with this key (made for {LOCAL_OWNER!r}; "
        "the previous one is revoked):",
        highlight=False,
    )
    print(key, flush=True)
    services = Services(settings, db, store, InProcessPool(store))
    uvicorn.run(create_app(services), host="127.0.0.1", port=port, log_level="warning")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who the key is for; it owns the key's jobs.")],
    db_url: DbOption = None,
) -> None:
    """Make an API key and print it, once: only its hash is stored."""
    db, _ = open_database(settings_of(database_url=db_url))
    try:
        with db.session() as session:
            key = create_key(session, name)
    except KeyNameError as error:
        fail(str(error))
    print(key)
    errors.print(f"key for {name!r}: shown once, stored as its sha256 only")


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="Whose key to revoke.")],
    db_url: DbOption = None,
) -> None:
    """Revoke a key: servers refuse it within their key cache's lifetime. `keys create NAME`
    then makes a new key for the same name, which keeps its jobs."""
    db, _ = open_database(settings_of(database_url=db_url))
    with db.session() as session:
        revoked = revoke_key(session, name)
    if not revoked:
        fail(f"no valid key named {name!r}")
    errors.print(f"revoked {name!r}'s key; servers refuse it within {KEY_CACHE_SECONDS:.0f} s")


@keys_app.command("list")
def list_(db_url: DbOption = None) -> None:
    """The keys: name, first characters, when made, whether revoked (never the keys)."""
    db, _ = open_database(settings_of(database_url=db_url))
    table = Table("name", "starts with", "created (UTC)", "revoked", title="API keys")
    with db.session(readonly=True) as session:
        for key in list_keys(session):
            table.add_row(
                key.name, key.prefix, f"{key.created_at:%Y-%m-%d %H:%M}", str(key.revoked)
            )
    console.print(table)


@commands.command()
def submit(
    spec: Annotated[
        Path, typer.Argument(help="A search spec, TOML or JSON.", exists=True, dir_okay=False)
    ],
    problem: Annotated[str | None, typer.Option(help="Override the spec's problem.")] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the job id and return.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end.")
    ] = False,
    server: ServerOption = None,
    key: KeyOption = None,
) -> None:
    """Submit a search to a server; follow its events with a progress bar, then report."""
    fields = read_spec(spec)
    if problem is not None:
        fields["problem"] = problem
    settings = settings_of(server=server, api_key=key)
    remote = client(settings)
    job = remote.submit(fields)
    if no_wait:
        print(job["id"])
        return
    errors.print(f"job {job['id']}: {job['problem']}, on {settings.server}", highlight=False)
    with JobProgress(job["id"], settings.progress_every) as progress:
        for event, data in remote.events(job["id"]):
            if event == "progress":
                progress.update(data)
    report(remote, job["id"], as_json)


def report(remote: Client, job_id: int, as_json: bool) -> None:
    """The same end-of-run report as an in-process run, from the server."""
    job = remote.job(job_id)
    rows = [SolutionRow.from_json(s) for s in remote.solutions(job_id, limit=1000)["solutions"]]
    stats = dict(job["stats"])
    document = {"job": job, "set_metrics": stats.pop("set_metrics", {}), "stats": stats}
    if as_json:
        print(json.dumps(document | {"minima": [r.to_json() for r in rows]}))
    else:
        print_report(console, rows, document)
    if job["status"] == "failed":
        fail(f"job {job_id} failed: {job['error']}")
