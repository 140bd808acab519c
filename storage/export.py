"""Export a solution set as an MLOps artifact: a folder (or .tar.gz) with a model card, the
metrics as CSV, the lineage DAG as GraphML and JSON, the weights with their hashes, and plots."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
from sqlalchemy import select

from storage.artifacts import ArtifactStore
from storage.database import Database
from storage.jobs import get_job
from storage.models import Job, Solution
from storage.queries import QueryError, SolutionRow, lineage_graph, solution_rows
from storage.selection import pareto_indices, stored_predictions

if TYPE_CHECKING:
    from ridgerider.problems.base import Problem

CARD_COLUMNS = ("loss", "train_accuracy", "test_accuracy", "ood_accuracy", "sharpness")


def export(
    db: Database,
    store: ArtifactStore,
    job_id: int,
    destination: Path,
    problem: Problem | None = None,
    *,
    ids: Sequence[int] | None = None,
    selection: str = "every distinct minimum the search found",
    objectives: tuple[str, str] | None = None,
    set_metrics: dict[str, float] | None = None,
) -> Path:
    """Write the export of the job's solutions `ids` (default: all) to `destination`: a folder,
    or an archive when it ends in `.tar.gz`. `selection` says in the card how they were chosen;
    `objectives` picks the scatter's two metrics; the `problem` names the model's size in the
    card. The card gives `set_metrics` (the chosen set's ensemble metrics, which the caller
    evaluates: `workers.evaluation`), or else the job's own when every solution is exported.
    Returns the path written.

    The export is built in a temporary folder that is removed whether it succeeds or fails
    (it holds copies of the weights).

    Raises:
        FileExistsError: `destination` exists and is not an empty folder, or is an archive
            path that exists.
        OSError: `destination` cannot be written.
        CorruptArtifactError, MissingArtifactError: a solution's weights are damaged or gone.
    """
    check_destination(destination)
    with db.session(readonly=True) as session:
        job = get_job(session, job_id)
        all_ids = session.scalars(
            select(Solution.id).where(Solution.job_id == job_id).order_by(Solution.id)
        ).all()
        ids = list(all_ids if ids is None else ids)
        unknown = set(ids) - set(all_ids)
        if unknown:
            raise LookupError(f"solutions {sorted(unknown)} are not in job {job_id}")
        rows = solution_rows(session, ids)
        try:
            predictions = stored_predictions(session, ids) if ids else None
        except QueryError:  # not a classifier: no disagreement to plot
            predictions = None
        graph = lineage_graph(session, job_id)
    if set_metrics is None:
        set_metrics = (job.stats or {}).get("set_metrics", {}) if ids == list(all_ids) else {}
    with tempfile.TemporaryDirectory(prefix="ridgerider-export-") as scratch:
        folder = Path(scratch) / destination.name.removesuffix(".tar.gz")
        folder.mkdir()
        (folder / "spec.json").write_text(json.dumps(job.spec, indent=2) + "\n")
        _write_metrics_csv(rows, folder / "metrics.csv")
        _write_weights(store, rows, folder / "weights")
        nx.write_graphml(graph, folder / "lineage.graphml")
        (folder / "lineage.json").write_text(
            json.dumps(nx.node_link_data(graph, edges="edges"), indent=1) + "\n"
        )
        figures = _plots(rows, predictions, graph, folder / "plots", objectives)
        card = _card(job, problem, rows, selection, set_metrics, figures)
        (folder / "MODEL_CARD.md").write_text(card)
        deliver(folder, destination)
    return destination


def check_destination(destination: Path) -> None:
    """Refuse to overwrite anything: an archive needs a new path, a folder a new or empty one;
    checked before any work, as is a file where a folder on the way should be.

    Raises:
        FileExistsError: `destination` is taken.
        NotADirectoryError: a file stands where one of its folders would be.
    """
    nearest = next(folder for folder in destination.parents if folder.exists())
    if not nearest.is_dir():
        raise NotADirectoryError(f"cannot write {destination}: {nearest} is a file, not a folder")
    if destination.name.endswith(".tar.gz"):
        if destination.exists():
            raise FileExistsError(f"{destination} already exists; choose a new path")
    elif destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not empty; choose a new path")


def deliver(folder: Path, destination: Path) -> None:
    """Move the finished export `folder` to `destination`, or pack it there as a .tar.gz; a
    partly written archive is removed, so that a failed export leaves nothing behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not destination.name.endswith(".tar.gz"):
        if destination.exists():
            destination.rmdir()
        shutil.move(folder, destination)
        return
    with destination.open("xb") as handle:  # never over a file that appeared meanwhile
        try:
            with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                tar.add(folder, arcname=folder.name)
        except BaseException:
            destination.unlink(missing_ok=True)
            raise


def disagreement_matrix(predictions: np.ndarray) -> np.ndarray:
    """The fraction of examples on which each pair of solutions (rows) predicts differently;
    a row at a time, so memory is n x m and n x n, never n x n x m (450 MB at 1,000)."""
    return np.stack([(predictions != row).mean(1) for row in predictions])


def _write_metrics_csv(rows: list[SolutionRow], path: Path) -> None:
    names = sorted({name for row in rows for name in row.metrics})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["solution_id", "node_id", "depth", "fingerprint", "weights_sha256", *names]
        )
        for row in rows:
            values = [row.metrics.get(name, "") for name in names]
            writer.writerow(
                [row.id, row.node_id, row.depth, row.fingerprint, row.weights_sha256, *values]
            )


def _write_weights(store: ArtifactStore, rows: list[SolutionRow], folder: Path) -> None:
    folder.mkdir()
    lines = []
    for row in rows:
        name = f"solution-{row.id}.safetensors"
        (folder / name).write_bytes(store.get(row.weights_sha256))
        lines.append(f"{row.weights_sha256}  {name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines))


def _plots(
    rows: list[SolutionRow],
    predictions: np.ndarray | None,
    graph: nx.MultiDiGraph,
    folder: Path,
    objectives: tuple[str, str] | None,
) -> list[str]:
    from storage import plots  # matplotlib loads only when something is exported

    folder.mkdir()
    made = []
    plots.ride_tree(graph, folder / "ride_tree.png")
    made.append("ride_tree.png")
    ids = [row.id for row in rows]
    names = set.intersection(*(set(row.metrics) for row in rows)) if rows else set()
    pair = objectives or next(
        (p for p in (("test_accuracy", "sharpness"), ("loss", "sharpness")) if set(p) <= names),
        None,
    )
    if pair and len(rows) > 1:
        values = np.array([[row.metrics[pair[0]], row.metrics[pair[1]]] for row in rows])
        maximise = np.array([1.0 if "accuracy" in name else -1.0 for name in pair])
        on_front = np.isin(np.arange(len(rows)), pareto_indices(values * maximise))
        plots.pareto_scatter(values, on_front, pair, ids, folder / "pareto.png")
        made.append("pareto.png")
    if predictions is not None:
        plots.disagreement_heatmap(
            disagreement_matrix(predictions), ids, folder / "disagreement.png"
        )
        made.append("disagreement.png")
    classes = sorted(
        (n for n in names if n.startswith("class_") and n.endswith("_accuracy")),
        key=lambda n: int(n.split("_")[1]),
    )
    if classes:
        matrix = np.array([[row.metrics[c] for c in classes] for row in rows])
        labels = [c.split("_")[1] for c in classes]
        plots.per_class_accuracy(matrix, ids, labels, folder / "per_class_accuracy.png")
        made.append("per_class_accuracy.png")
    return made


def _card(
    job: Job,
    problem: Problem | None,
    rows: list[SolutionRow],
    selection: str,
    set_metrics: dict[str, float],
    figures: list[str],
) -> str:
    stats = job.stats or {}
    present = [c for c in CARD_COLUMNS if any(c in row.metrics for row in rows)]
    lines = [
        f"# Model card: ridgerider job {job.id}, {problem.name if problem else job.problem}",
        "",
        f"{len(rows)} solutions: {selection}. They are distinct minima of the training loss found "
        "by Ridge Rider (riding negative-curvature eigenvectors of the Hessian from a saddle).",
        "",
        "## The problem and the search",
        "",
        f"- problem: `{job.problem}`" + (f" ({problem.dim} parameters)" if problem else ""),
        f"- job status: {job.status}; created {job.created_at:%Y-%m-%d %H:%M} UTC",
        f"- search: {stats.get('nodes', '?')} points, {stats.get('rides', '?')} rides "
        f"({stats.get('failed_rides', 0)} failed), {stats.get('hvps', job.hvps):,} "
        f"Hessian-vector products, {stats.get('seconds', job.run_seconds):.1f} s; stopped: "
        f"{stats.get('stopped', job.stopped or '-')}",
        "",
        "The search spec (`spec.json`):",
        "",
        "```json",
        json.dumps(job.spec, indent=2),
        "```",
        "",
        "## Metrics",
        "",
        "| solution | depth | fingerprint | "
        + " | ".join(c.replace("_", " ") for c in present)
        + " | sha256 |",
        "|---:|---:|---|" + "---:|" * len(present) + "---|",
    ]
    for row in rows:
        cells = [_cell(row.metrics.get(c)) for c in present]
        lines.append(
            f"| {row.id} | {row.depth} | `{row.fingerprint or '(start)'}` | {' | '.join(cells)} "
            f"| `{row.weights_sha256[:12]}` |"
        )
    lines += ["", "Every metric of every solution is in `metrics.csv`.", ""]
    if set_metrics:
        lines += ["## The set", ""]
        lines += [
            f"- {name.replace('_', ' ')}: {_cell(value)}" for name, value in set_metrics.items()
        ]
        lines.append("")
    lines += [
        "## Files",
        "",
        "- `weights/solution-<id>.safetensors`: the flat parameter vector `theta`; "
        "`weights/SHA256SUMS` holds their sha256 (`sha256sum -c`)",
        "- `lineage.graphml`, `lineage.json`: the DAG of critical points and rides (networkx)",
        "- `metrics.csv`, `spec.json`",
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{name}](plots/{name})" for name in figures]
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"
