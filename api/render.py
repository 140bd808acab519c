"""Terminal output of stored results: solution tables, job lists, CSV, the end-of-run report."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from storage.queries import SolutionRow

SOLUTION_COLUMNS = (
    "loss",
    "grad_norm",
    "train_accuracy",
    "test_accuracy",
    "ood_accuracy",
    "sharpness",
    "distance_from_start",
)


def cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.4f}"


def solutions_table(rows: Sequence[SolutionRow], title: str) -> Table:
    present = [c for c in SOLUTION_COLUMNS if any(c in row.metrics for row in rows)]
    table = Table(title=title)
    table.add_column("id", justify="right")
    table.add_column("depth", justify="right")
    widest = max((len(row.fingerprint or "(start)") for row in rows), default=0)
    table.add_column("fingerprint", no_wrap=True, min_width=widest)  # never cut: it names a path
    for column in present:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        metrics = [cell(row.metrics.get(c)) for c in present]
        table.add_row(str(row.id), str(row.depth), row.fingerprint or "(start)", *metrics)
    return table


def solutions_csv(rows: Sequence[SolutionRow]) -> str:
    names = sorted({name for row in rows for name in row.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "node_id", "depth", "fingerprint", "weights_sha256", *names])
    for row in rows:
        metrics = [row.metrics.get(name, "") for name in names]
        writer.writerow(
            [row.id, row.node_id, row.depth, row.fingerprint, row.weights_sha256, *metrics]
        )
    return out.getvalue()


def jobs_table(jobs: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="jobs")
    for column in ("id", "problem", "status", "created", "minima", "HVPs", "seconds"):
        table.add_column(column, justify="right" if column != "problem" else "left")
    for job in jobs:
        table.add_row(
            str(job["id"]),
            job["problem"],
            job["status"],
            job["created_at"][:19].replace("T", " "),
            str(job.get("minima", "-")),
            f"{job['hvps']:,}",
            f"{job['seconds']:.1f}",
        )
    return table


def print_report(console: Console, rows: Sequence[SolutionRow], document: dict[str, Any]) -> None:
    """The end of a run: the distinct minima by loss, the set's metrics, the search's numbers."""
    job, stats = document["job"], document["stats"]
    ordered = sorted(rows, key=lambda row: row.metrics.get("loss", 0.0))
    console.print(solutions_table(ordered, f"{len(rows)} distinct minima of {job['problem']}"))
    summary = ", ".join(
        f"{k.replace('_', ' ')} {cell(v)}" for k, v in document["set_metrics"].items()
    )
    if summary:
        console.print(f"set: {summary}")
    console.print(
        f"{stats.get('nodes', 0)} points ({stats.get('saddles', 0)} saddles, "
        f"{stats.get('branch_points', 0)} branch points, "
        f"{stats.get('degenerate', 0)} degenerate), {stats.get('rides', 0)} rides, "
        f"{stats.get('failed_rides', 0)} failed, {job['hvps']:,} HVPs, {job['seconds']:.1f} s; "
        f"stopped: {stats.get('stopped', '-')}{left_open(stats)}"
    )
    if failed := document.get("failed_points"):
        are = "point's" if len(failed) == 1 else "points'"
        console.print(
            f"{len(failed)} {are} evaluation or expansion failed, each kept without it; node "
            f"{failed[0]['node']}: {failed[0]['error']}"
        )
    if degenerate := stats.get("degenerate", 0):
        are = "point is" if degenerate == 1 else "points are"
        console.print(
            f"{degenerate} degenerate {are} in the graph, not among the minima: flat in "
            "more directions than the problem declares (zero_modes), second order cannot tell "
            "a valley of minima from a higher-order saddle"
        )
    console.print(
        f"job {job['id']} ({job['status']}) is stored; query it with "
        f"`ridgerider solutions {job['id']}`"
    )


def failed_points(progress: dict[str, Any]) -> str:
    """ ", N points failed, " where some point's evaluation or expansion raised, else ", "."""
    count = progress.get("failed_points", 0)
    return f", {count} points failed, " if count else ", "


def left_open(stats: dict[str, Any]) -> str:
    """What a stopped search left undone, where it left anything: its skipped expansions and
    rides."""
    counts = {
        "expansions": stats.get("skipped_expansions", 0),
        "rides": stats.get("skipped_rides", 0),
    }
    left = " and ".join(f"{count} {what}" for what, count in counts.items() if count)
    return f" ({left} left open)" if left else ""


def print_rows(
    console: Console, rows: Sequence[SolutionRow], output: str, title: str, next_cursor: str | None
) -> None:
    """Solutions as a table (with the next page's cursor), JSON or CSV."""
    if output == "json":
        data = {"solutions": [row.to_json() for row in rows], "next_cursor": next_cursor}
        print(json.dumps(data))
    elif output == "csv":
        print(solutions_csv(rows), end="")
        if next_cursor:
            print(f"more: --cursor {next_cursor}", file=sys.stderr)
    else:
        console.print(solutions_table(rows, title))
        if next_cursor:
            console.print(f"more: --cursor {next_cursor}", soft_wrap=True)


def print_status(console: Console, data: dict[str, Any], output: str) -> None:
    """A job's summary with its progress (from the database or a server), as text or JSON."""
    if output == "json":
        print(json.dumps(data))
        return
    progress = data["progress"]
    error = f"; error: {data['error']}" if data.get("error") else ""
    console.print(
        f"job {data['id']} ({data['problem']}): {data['status']}; {progress['nodes']} critical "
        f"points, {progress['minima']} minima, {progress['rides']} rides "
        f"({progress['failed_rides']} failed), {failed_points(progress)}"
        f"{progress['outstanding']} units to go, "
        f"{data['hvps']:,} HVPs, {data['seconds']:.1f} s{error}"
    )
