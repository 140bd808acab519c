"""The `ridgerider` command line."""

from __future__ import annotations

import json
import time
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import torch
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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
from ridgerider.report import SearchReport
from ridgerider.report import run as run_search
from ridgerider.search import SearchSpec

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
) -> None:
    """Run a Ridge Rider search in-process and report the distinct minima it found."""
    fields = _read_spec(spec) if spec else {}
    if problem is not None:
        fields["problem"] = problem
    try:
        search_spec = SearchSpec(**fields)
        target = load(search_spec.problem)
    except ValidationError as error:
        _fail("invalid search spec:\n" + _describe(error))
    except (UnknownProblemError, ValueError, TypeError) as error:
        _fail(str(error))
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task(f"searching {target.name}", total=None)
        counts = {"rides": 0, "minima": 0, "hvps": 0}

        def on_event(kind: str, data: dict) -> None:
            if kind == "ride":
                counts["rides"] += 1
                counts["hvps"] = data["hvps"]
            elif kind == "failure":
                counts["rides"] += 1
            elif kind == "node" and data["point"].kind == "minimum":
                counts["minima"] += 1
            progress.update(
                task,
                description=f"searching {target.name}: {counts['rides']} rides, "
                f"{counts['minima']} minima, {counts['hvps']:,} HVPs",
            )

        try:
            report = run_search(search_spec, target, on_event)
        except ValueError as error:
            _fail(str(error))
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        _print_report(report)


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
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


def _print_report(report: SearchReport) -> None:
    result = report.result
    columns = [
        "loss",
        "grad_norm",
        "train_accuracy",
        "test_accuracy",
        "ood_accuracy",
        "sharpness",
        "distance_from_start",
    ]
    present = [c for c in columns if any(c in m.metrics for m in report.minima)]
    table = Table(title=f"{len(report.minima)} distinct minima of {report.problem.name}")
    table.add_column("id", justify="right")
    for column in present:
        table.add_column(column.replace("_", " "), justify="right")
    for minimum in sorted(report.minima, key=lambda m: m.point.loss):
        cells = [_cell(minimum.metrics.get(c)) for c in present]
        table.add_row(str(minimum.id), *cells)
    console.print(table)
    summary = ", ".join(f"{k.replace('_', ' ')} {_cell(v)}" for k, v in report.set_metrics.items())
    console.print(f"set: {summary}")
    degenerate = len(report.result.points("degenerate"))
    console.print(
        f"{result.graph.number_of_nodes()} critical points ({len(result.points('saddle'))} saddles"
        f", {degenerate} degenerate), {result.graph.number_of_edges()} rides, "
        f"{len(result.failures)} failed, {result.hvps:,} HVPs, {result.seconds:.1f} s; "
        f"stopped: {result.stopped}"
    )


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.4f}"
