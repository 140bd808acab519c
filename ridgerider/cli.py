"""The `ridgerider` command line."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated

import torch
import typer
from rich.console import Console
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

app = typer.Typer(help="Ridge Rider: find many genuinely different minima of a loss.")
console = Console()


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
