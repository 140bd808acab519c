"""`ridgerider mlflow`: hand a job's chosen solutions to MLflow from the command line."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from api.cli_common import (
    ArtifactsOption,
    DbOption,
    JobArgument,
    WhereOption,
    console,
    fail,
    open_database,
    settings_of,
)
from storage.jobs import get_job
from storage.selection import Choice, choose
from workers.mlflow_names import DEFAULT_EXPERIMENT, PRINTABLE_PATTERN, REGISTERED_MODEL_PATTERN

commands = typer.Typer()


@commands.command()
def mlflow(
    job: JobArgument,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking server or store (default: MLflow's own, from "
            "MLFLOW_TRACKING_URI)."
        ),
    ] = None,
    experiment: Annotated[str, typer.Option(help="The experiment to log into.")] = (
        DEFAULT_EXPERIMENT
    ),
    register: Annotated[
        str | None,
        typer.Option(help="Make each chosen model a version of this registered model."),
    ] = None,
    pareto: Annotated[
        str | None, typer.Option(help="Hand off the Pareto front of these objectives.")
    ] = None,
    diverse: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Hand off a diverse top-k.")
    ] = None,
    where: WhereOption = None,
    db_url: DbOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Hand a job's solutions to MLflow: a parent run for the job (spec, set metrics, model
    card, lineage, plots) and a nested run per solution with its model (PyTorch, saved with
    torch.export); with --register, model versions. Run again, it adds nothing."""
    if register is not None and not re.fullmatch(REGISTERED_MODEL_PATTERN, register):
        fail(f"--register must be 1 to 200 letters, digits, _ or - (got {register!r})")
    if not re.fullmatch(PRINTABLE_PATTERN, experiment):
        fail(f"--experiment must be 1 to 200 printable ASCII characters (got {experiment!r})")
    from workers.mlflow_handoff import MlflowMissingError, hand_off, require_mlflow  # the engine

    try:
        module = require_mlflow()
    except MlflowMissingError as error:
        fail(str(error))
    db, store = open_database(settings_of(database_url=db_url, artifacts=artifacts))
    with db.session(readonly=True) as session:
        get_job(session, job)
        ids, how = choose(session, job, Choice(pareto, diverse, where))
    uri = tracking_uri or module.get_tracking_uri()
    from mlflow.exceptions import MlflowException

    with console.status(f"logging {len(ids)} solutions of job {job} to {uri}"):
        try:
            result = hand_off(
                db,
                store,
                job,
                ids,
                how,
                tracking_uri=uri,
                experiment=experiment,
                register=register,
            )
        except MlflowException as error:
            fail(f"MLflow at {uri}: {error.message}")
    table = Table(title=f"job {job} in MLflow experiment {experiment!r} ({uri})")
    for column in ("solution", "run", *(("version",) if register else ())):
        table.add_column(column)
    for solution_id, run_id in result.runs.items():
        version = (result.versions.get(solution_id, "-"),) if register else ()
        table.add_row(str(solution_id), run_id, *version)
    console.print(table)
    console.print(
        f"parent run {result.parent_run_id}: {how}; {result.created_runs} runs and "
        f"{result.created_versions} model versions added"
        + (" (the hand-off was done before: nothing new)" if not result.created_runs else "")
    )
