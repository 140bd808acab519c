"""Hand a chosen set of solutions to MLflow: one parent run for the job (its spec, set metrics,
model card, lineage and plots) and one nested run per solution (its metrics, its weights as an
MLflow PyTorch model), optionally registered as versions of a model.

A hand-off is found again by its tags (the database's instance id, the job and the selection),
so running it twice adds no run, no logged model and no model version: what is complete is
left as it is, what a failed hand-off left unfinished is finished.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from ridgerider import __version__
from ridgerider.problems.base import Problem
from ridgerider.problems.registry import load
from ridgerider.search.archive import evaluation_split
from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.export import export
from storage.jobs import get_job
from storage.queries import SolutionRow, solution_rows
from storage.secrets import INSTANCE, service_secret
from workers.evaluation import ensemble_metrics
from workers.mlflow_names import DEFAULT_EXPERIMENT

INSTALL_HINT = "MLflow is not installed: pip install 'ridgerider[mlflow]'"
EXAMPLE_ROWS = 5
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
TAG = "ridgerider_"


class MlflowMissingError(RuntimeError):
    """MLflow is not installed here."""


@dataclass(frozen=True)
class HandoffResult:
    """Where a hand-off put things, and what it added this time."""

    experiment_id: str
    parent_run_id: str
    runs: dict[int, str]
    versions: dict[int, str]
    created_runs: int
    created_versions: int

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "runs": {str(k): v for k, v in self.runs.items()},
            "versions": {str(k): v for k, v in self.versions.items()},
            "created_runs": self.created_runs,
            "created_versions": self.created_versions,
        }


def require_mlflow() -> Any:
    """The `mlflow` module.

    Raises:
        MlflowMissingError: it is not installed (the message says how to install it).
    """
    try:
        import mlflow
    except ImportError as error:
        raise MlflowMissingError(INSTALL_HINT) from error
    return mlflow


def hand_off(
    db: Database,
    store: ArtifactStore,
    job_id: int,
    ids: list[int],
    selection: str,
    *,
    tracking_uri: str,
    experiment: str = DEFAULT_EXPERIMENT,
    register: str | None = None,
    allow_import: bool = True,
) -> HandoffResult:
    """Log the job's solutions `ids` (chosen as `selection` says) to the MLflow tracking server
    or store at `tracking_uri`, under `experiment`; with `register`, make each solution's model
    a version of the registered model of that name.

    Raises:
        MlflowMissingError: MLflow is not installed.
        JobNotFoundError: no job `job_id`.
        LookupError: an id is not a solution of the job.
        mlflow.exceptions.MlflowException: the tracking server refused or cannot be reached.
    """
    mlflow = require_mlflow()
    from mlflow.tracking import MlflowClient

    with db.session(readonly=True) as session:
        job = get_job(session, job_id)
        rows = solution_rows(session, ids)
        instance = service_secret(session, INSTANCE).hex()[:16]
        spec, problem_name = dict(job.spec), job.problem
    missing = set(ids) - {row.id for row in rows}
    if missing or any(row.job_id != job_id for row in rows):
        raise LookupError(f"solutions {sorted(missing) or ids} are not in job {job_id}")
    problem = load(problem_name, allow_import=allow_import)
    key = _handoff_key(instance, job_id, ids)
    common = {f"{TAG}handoff": key, f"{TAG}job_id": str(job_id), f"{TAG}instance": instance}

    with _tracking(mlflow, tracking_uri):
        client = MlflowClient(tracking_uri)
        experiment_id = _experiment(client, experiment)
        parent, created = _find_or_create(
            client, experiment_id, common | {f"{TAG}role": "job"}, f"job-{job_id}"
        )
        if not _complete(parent):
            client.set_tag(parent.info.run_id, f"{TAG}version", __version__)
            client.set_tag(parent.info.run_id, f"{TAG}selection", selection[:MAX_PARAM_CHARS])
            _log_job(client, parent.info.run_id, db, store, job_id, ids, selection, spec, problem)
        runs: dict[int, str] = {}
        for row in rows:
            child, new = _find_or_create(
                client,
                experiment_id,
                common | {f"{TAG}role": "solution", f"{TAG}solution_id": str(row.id)},
                f"job-{job_id}-solution-{row.id}",
                parent=parent.info.run_id,
            )
            created += new
            if not _complete(child):
                _log_solution(mlflow, client, child.info.run_id, store, row, problem)
            runs[row.id] = child.info.run_id
        versions, new_versions = (
            _register(mlflow, client, register, key, runs, rows) if register else ({}, 0)
        )
    return HandoffResult(experiment_id, parent.info.run_id, runs, versions, created, new_versions)


@contextmanager
def _tracking(mlflow: Any, uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `uri` (model logging and registration read it),
    and put back after."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _handoff_key(instance: str, job_id: int, ids: list[int]) -> str:
    """The tag that finds this hand-off again: the database, the job and the chosen set."""
    text = f"{instance}/{job_id}/{','.join(map(str, sorted(ids)))}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _find_or_create(
    client: Any, experiment_id: str, tags: Mapping[str, str], name: str, parent: str | None = None
) -> tuple[Any, int]:
    """The run carrying `tags` in the experiment, or a new one (and whether it is new)."""
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    found = client.search_runs([experiment_id], filter_string=query, max_results=2)
    if found:
        return found[0], 0
    extra = {"mlflow.parentRunId": parent} if parent else {}
    return client.create_run(experiment_id, tags=dict(tags) | extra, run_name=name), 1


def _complete(run: Any) -> bool:
    return run.data.tags.get(f"{TAG}complete") == "true"


def _finish(client: Any, run_id: str) -> None:
    client.set_tag(run_id, f"{TAG}complete", "true")
    client.set_terminated(run_id, "FINISHED")


def _log_job(
    client: Any,
    run_id: str,
    db: Database,
    store: ArtifactStore,
    job_id: int,
    ids: list[int],
    selection: str,
    spec: dict[str, Any],
    problem: Problem,
) -> None:
    """The parent run: the spec as params, the chosen set's metrics, and the export (model
    card, lineage, metrics table, plots) as artifacts, without the weights (each solution's
    run holds its own)."""
    from mlflow.entities import Param

    params = [Param(k, v[:MAX_PARAM_CHARS]) for k, v in _flatten(spec).items()]
    set_metrics = ensemble_metrics(db, store, job_id, ids, problem) if ids else {}
    client.log_batch(run_id, metrics=_metrics(set_metrics), params=params)
    with tempfile.TemporaryDirectory(prefix="ridgerider-mlflow-") as scratch:
        folder = export(
            db,
            store,
            job_id,
            Path(scratch) / f"job-{job_id}",
            problem,
            ids=ids,
            selection=selection,
            set_metrics=set_metrics,
        )
        for part in sorted(folder.iterdir()):
            if part.name == "weights":
                continue
            if part.is_dir():
                client.log_artifacts(run_id, str(part), part.name)
            else:
                client.log_artifact(run_id, str(part))
    _finish(client, run_id)


def _flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in spec.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{name}.")
        else:
            flat[f"{prefix}{name}"] = str(value)
    return flat


def _log_solution(
    mlflow: Any, client: Any, run_id: str, store: ArtifactStore, row: SolutionRow, problem: Problem
) -> None:
    """A solution's run: its metrics, fingerprint and depth, its weights (safetensors, as
    stored) and, for a problem built from a module, an MLflow PyTorch model with a signature
    and an input example."""
    from mlflow.entities import Param

    params = [
        Param("fingerprint", row.fingerprint or "(start)"),
        Param("depth", str(row.depth)),
        Param("weights_sha256", row.weights_sha256),
    ]
    client.log_batch(run_id, metrics=_metrics(row.metrics), params=params)
    client.set_tag(run_id, f"{TAG}weights_sha256", row.weights_sha256)
    data = store.get(row.weights_sha256)  # verified against its sha256
    with tempfile.TemporaryDirectory(prefix="ridgerider-mlflow-") as scratch:
        weights = Path(scratch) / f"solution-{row.id}.safetensors"
        weights.write_bytes(data)
        client.log_artifact(run_id, str(weights), "weights")
    if problem.to_module is not None:
        module = problem.to_module(load_safetensors(data)["theta"].to(problem.dtype))
        with mlflow.start_run(run_id=run_id):  # log_model logs to the active run
            info = _log_model(mlflow, module, problem)
        client.set_tag(run_id, f"{TAG}model_uri", info.model_uri)
    _finish(client, run_id)


def _metrics(values: Mapping[str, float]) -> list[Any]:
    """MLflow metric entities for `values`, at step 0."""
    from mlflow.entities import Metric

    return [Metric(name, float(value), 0, 0) for name, value in values.items()]


def _log_model(mlflow: Any, module: nn.Module, problem: Problem) -> Any:
    from mlflow.models import infer_signature

    example = evaluation_split(problem)[0][:EXAMPLE_ROWS].detach().cpu().numpy()
    with torch.no_grad():
        outputs = module(torch.as_tensor(example)).numpy()
    return mlflow.pytorch.log_model(
        module,
        name="model",
        signature=infer_signature(example, outputs),
        input_example=example,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )


def _register(
    mlflow: Any,
    client: Any,
    name: str,
    key: str,
    runs: dict[int, str],
    rows: list[SolutionRow],
) -> tuple[dict[int, str], int]:
    """Each solution's model as a version of the registered model `name`, tagged with its
    solution id and weights sha256; versions this hand-off made before are reused."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = {
        (v.tags.get(f"{TAG}handoff"), v.tags.get(f"{TAG}solution_id")): v.version
        for v in client.search_model_versions(f"name = '{name}'")
    }
    versions, created = {}, 0
    for row in rows:
        found = existing.get((key, str(row.id)))
        if found is None:
            model_uri = client.get_run(runs[row.id]).data.tags.get(f"{TAG}model_uri")
            if model_uri is None:
                continue  # a function of a flat vector: weights only, nothing to register
            version = mlflow.register_model(
                model_uri,
                name,
                tags={
                    f"{TAG}handoff": key,
                    f"{TAG}solution_id": str(row.id),
                    "weights_sha256": row.weights_sha256,
                },
            )
            found, created = version.version, created + 1
        versions[row.id] = str(found)
    return versions, created
