"""The Ridge Rider tree (a DAG of critical points): expand saddles, ride ridges, merge repeats.

Each unit of work is a function of (problem, spec, state) so that the in-process loop here and
the distributed workers later call the same code: `get_ridges` (eigenpairs once per node, both
signs of each ridge) and `follow` (ride, settle, classify).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ridgerider.critical import (
    CriticalPoint,
    SettleConfig,
    classify,
    settle,
    settle_to_minimum,
)
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.base import Problem
from ridgerider.ride import RideConfig, RideEnd, ride

Frontier = Literal["breadth-first", "depth-first", "most-negative-first"]
SADDLE_SETTLE_MAX_DIM = 20
FUNCTION_MERGE_TOL = 1e-4  # max probability difference of one function (measured: 18 minima)


class SearchSpec(BaseModel):
    """Everything that decides a search, with defaults; one seed makes it reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: str = Field("digits-mlp", description="registered name[:key=value,...]")
    frontier: Frontier = "breadth-first"
    max_nodes: int = Field(100, ge=1, le=100_000, description="distinct critical points")
    max_depth: int = Field(10, ge=1, le=1_000, description="saddles deeper are not expanded")
    ridges_per_node: int = Field(8, ge=1, le=512, description="ridges ridden per saddle")
    ridge_policy: Literal["auto", "one-per-group", "every-direction"] = Field(
        "auto",
        description="ride one eigenvector per group of equal eigenvalues (symmetric copies), "
        "or every eigenvector; auto: one per group where the problem declares its symmetries",
    )
    max_hvps: int | None = Field(None, ge=1, description="total Hessian-vector product budget")
    max_seconds: float | None = Field(None, gt=0, description="wall-time budget")
    step_size: float = Field(0.05, gt=0, le=100, description="ride step length")
    max_steps: int = Field(1000, ge=1, le=1_000_000, description="steps per ride")
    curvature_tol: float = Field(1e-8, ge=0, le=1, description="a ride ends at curvature >= -tol")
    tracking_tol: float = Field(1e-3, gt=0, lt=1, description="tracking residual / ||H||")
    settle: Literal["auto", "saddle", "minimum"] = "auto"
    grad_tol: float = Field(1e-9, gt=0, lt=1, description="gradient norm of a critical point")
    merge_tol: float = Field(1e-3, gt=0, lt=1, description="relative distance of one point")
    merge_by_function: bool = Field(
        False,
        description="also merge points whose predicted probabilities on the evaluation split "
        "agree to within 1e-4 (classifiers only)",
    )
    seed: int = Field(0, ge=0)

    def ride_config(self) -> RideConfig:
        return RideConfig(
            step_size=self.step_size,
            max_steps=self.max_steps,
            curvature_tol=self.curvature_tol,
            tracking_tol=self.tracking_tol,
        )

    def settle_config(self, start: CriticalPoint) -> SettleConfig:
        """The settle target: "auto" settles on saddles only in small problems whose every
        negative direction can be held (the descent along positive curvature is first order,
        slow and fragile on networks), and descends to minima otherwise."""
        target = self.settle
        if target == "auto":
            small = start.theta.numel() <= SADDLE_SETTLE_MAX_DIM
            holdable = start.index_is_exact and start.index <= SettleConfig.probe
            target = "saddle" if small and holdable else "minimum"
        return SettleConfig(grad_tol=self.grad_tol, target=target)


@dataclass(frozen=True)
class Ridge:
    """One ride to take: from `node`, along eigenvector `eigen_index` with `sign`; with the
    eigenvectors of the nearest other eigenvalues (to track it) and an estimate of ||H||."""

    node: int
    eigen_index: int
    sign: int
    eigenvalue: float
    direction: Tensor
    neighbours: Tensor
    norm_estimate: float


@dataclass(frozen=True)
class Outcome:
    """What following a ridge gave: a critical point, or the reason it failed."""

    ridge: Ridge
    end: RideEnd
    hvps: int
    point: CriticalPoint | None = None
    failure: str | None = None


@dataclass
class SearchResult:
    """The DAG (node attribute `point`: a CriticalPoint, and `depth`; edge attributes: the ride
    labels), the failed rides, HVPs spent, seconds, and why the search stopped."""

    graph: nx.MultiDiGraph
    hvps: int
    seconds: float
    stopped: str
    failures: list[Outcome] = field(default_factory=list)

    def points(self, kind: str | None = None) -> list[CriticalPoint]:
        return [
            data["point"]
            for _, data in self.graph.nodes(data=True)
            if kind is None or data["point"].kind == kind
        ]


@dataclass(frozen=True)
class Spectrum:
    """The most negative eigenpairs at a saddle (values float64 ascending, on the CPU; vectors
    n x k on the problem's device), an estimate of ||H||, and the HVPs they cost."""

    values: Tensor
    vectors: Tensor
    norm_estimate: float
    hvps: int


def ridge_policy(problem: Problem, spec: SearchSpec) -> str:
    """The spec's ridge policy with "auto" resolved for `problem`."""
    if spec.ridge_policy != "auto":
        return spec.ridge_policy
    return "one-per-group" if problem.align else "every-direction"


def node_spectrum(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> Spectrum:
    """The eigenpairs a saddle's ridges are chosen from: enough to see `ridges_per_node` groups
    of equal eigenvalues (one group per ridge under "one-per-group") and to track each ridge."""
    per_group = 1 if ridge_policy(problem, spec) == "every-direction" else _group_size(point)
    wanted = spec.ridges_per_node * per_group
    k = wanted if not point.index_is_exact else min(point.index, wanted)
    k = min(max(k, spec.ride_config().track), problem.dim)
    op = HessianOperator(problem.loss, point.theta)
    result = eigsh(op, k, "SA", seed=spec.seed)
    top = eigsh(op, 1, "LA", tol=1e-2, seed=spec.seed)
    norm_estimate = max(abs(top.eigenvalues[0].item()), result.eigenvalues.abs().max().item())
    hvps = result.info.matvecs + top.info.matvecs
    return Spectrum(result.eigenvalues.cpu(), result.eigenvectors, norm_estimate, hvps)


def choose_ridges(problem: Problem, spectrum: Spectrum, spec: SearchSpec) -> list[tuple[int, int]]:
    """(eigen index, sign) of every ride to take: the negative eigenvalues, at most
    `ridges_per_node` of them (one per group of values equal to within 1e-6 relative under
    "one-per-group", so that symmetric copies are ridden once), each with both signs."""
    every = ridge_policy(problem, spec) == "every-direction"
    values = spectrum.values
    chosen: list[int] = []
    for index in range(len(values)):
        if values[index] >= 0 or len(chosen) == spec.ridges_per_node:
            break
        same = chosen and abs(values[index] - values[chosen[-1]]) <= 1e-6 * values.abs().max()
        if every or not same:
            chosen.append(index)
    return [(index, sign) for index in chosen for sign in (1, -1)]


def make_ridge(node: int, spectrum: Spectrum, eigen_index: int, sign: int, track: int) -> Ridge:
    """The ride along eigenvector `eigen_index` with `sign`, with the `track - 1` eigenvectors
    whose eigenvalues are nearest its own as neighbours to track it by."""
    values = spectrum.values
    nearest = [
        j for j in torch.argsort((values - values[eigen_index]).abs()).tolist() if j != eigen_index
    ]
    neighbours = spectrum.vectors[:, nearest[: track - 1]]
    direction = sign * spectrum.vectors[:, eigen_index]
    value = values[eigen_index].item()
    return Ridge(node, eigen_index, sign, value, direction, neighbours, spectrum.norm_estimate)


def get_ridges(
    problem: Problem, node: int, point: CriticalPoint, spec: SearchSpec
) -> tuple[list[Ridge], int]:
    """The ridges to ride from a saddle, and the HVPs finding them cost (see `node_spectrum`
    and `choose_ridges`)."""
    spectrum = node_spectrum(problem, point, spec)
    track = spec.ride_config().track
    ridges = [
        make_ridge(node, spectrum, index, sign, track)
        for index, sign in choose_ridges(problem, spectrum, spec)
    ]
    return ridges, spectrum.hvps


def _group_size(point: CriticalPoint) -> int:
    """Copies of the most negative eigenvalue among those classify computed (at least 1)."""
    values = point.eigenvalues
    return int(((values - values[0]).abs() <= 1e-6 * values.abs().max()).sum())


def needs_expansion(index: int, depth: int, spec: SearchSpec) -> bool:
    """Whether the search rides on from a point of this Morse `index` at this `depth`: a saddle
    (or maximum) above `max_depth`."""
    return index > 0 and depth < spec.max_depth


def follow(
    problem: Problem, theta: Tensor, ridge: Ridge, spec: SearchSpec, settle_config: SettleConfig
) -> Outcome:
    """Ride `ridge` from `theta`, settle on the critical point it leads to, and classify it."""
    end = ride(
        problem.loss,
        theta,
        ridge.direction,
        spec.ride_config(),
        neighbours=ridge.neighbours,
        norm_estimate=ridge.norm_estimate,
    )
    if end.reason == "non-finite-loss":
        return Outcome(ridge, end, end.hvps, failure="the loss turned NaN or Inf during the ride")
    settle_fn = settle if settle_config.target == "saddle" else settle_to_minimum
    try:
        settled, settle_hvps = settle_fn(problem.loss, end.theta, settle_config)
        point = classify(problem.loss, settled, zero_modes=problem.zero_modes)
    except FloatingPointError as error:
        return Outcome(ridge, end, end.hvps, failure=f"settling failed: {error}")
    if point.grad_norm > 1e3 * settle_config.grad_tol:
        failure = f"settling ended at gradient norm {point.grad_norm:.3g}, not a critical point"
        return Outcome(ridge, end, end.hvps + settle_hvps + point.hvps, failure=failure)
    return Outcome(ridge, end, end.hvps + settle_hvps + point.hvps, point=point)


def search(
    problem: Problem,
    spec: SearchSpec | None = None,
    on_event: Callable[[str, dict], None] | None = None,
) -> SearchResult:
    """Ride every ridge from the problem's start, recursively, until the budgets end.

    Args:
        problem: what to search.
        spec: budgets and policies (its `problem` field is not used here).
        on_event: called as `on_event(kind, data)` for "node", "ride" and "failure" (progress).

    Raises:
        ValueError: the problem has no start, or its start is not a critical point.
    """
    spec = spec or SearchSpec()
    emit = on_event or (lambda kind, data: None)
    if problem.start is None:
        raise ValueError(f"problem {problem.name!r} has no start point; give one")
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    root = classify(problem.loss, problem.start, zero_modes=problem.zero_modes)
    if root.grad_norm > 1e-5 * max(1.0, abs(root.loss)):
        raise ValueError(
            f"the start of {problem.name!r} is not a critical point: gradient norm "
            f"{root.grad_norm:.3g}"
        )
    settle_config = spec.settle_config(root)
    graph = nx.MultiDiGraph()
    graph.add_node(0, point=root, depth=0)
    emit("node", {"node": 0, "point": root})
    hvps = root.hvps
    failures: list[Outcome] = []
    frontier: deque[int] = deque([0] if needs_expansion(root.index, 0, spec) else [])
    stopped = "frontier exhausted"
    while frontier:
        if graph.number_of_nodes() >= spec.max_nodes:
            stopped = "node budget"
            break
        node = _pop(frontier, graph, spec.frontier)
        point, depth = graph.nodes[node]["point"], graph.nodes[node]["depth"]
        ridges, spent = get_ridges(problem, node, point, spec)
        hvps += spent
        for ridge in ridges:
            if spec.max_hvps is not None and hvps >= spec.max_hvps:
                stopped = "HVP budget"
            elif spec.max_seconds is not None and time.perf_counter() - started > spec.max_seconds:
                stopped = "time budget"
            elif graph.number_of_nodes() >= spec.max_nodes:
                stopped = "node budget"
            if stopped != "frontier exhausted":
                break
            outcome = follow(problem, point.theta, ridge, spec, settle_config)
            hvps += outcome.hvps
            if outcome.point is None:
                failures.append(outcome)
                emit("failure", {"node": node, "outcome": outcome})
                continue
            known = ((n, data["point"].theta) for n, data in graph.nodes(data=True))
            target = find_copy(problem, outcome.point.theta, known, spec)
            if target is None:
                target = graph.number_of_nodes()
                graph.add_node(target, point=outcome.point, depth=depth + 1)
                emit("node", {"node": target, "point": outcome.point})
                if needs_expansion(outcome.point.index, depth + 1, spec):
                    frontier.append(target)
            graph.add_edge(
                node,
                target,
                eigen_index=ridge.eigen_index,
                sign=ridge.sign,
                eigenvalue=ridge.eigenvalue,
                steps=outcome.end.steps,
                hvps=outcome.hvps,
                end_reason=outcome.end.reason,
            )
            emit("ride", {"node": node, "target": target, "hvps": hvps})
        if stopped != "frontier exhausted":
            break
    return SearchResult(graph, hvps, time.perf_counter() - started, stopped, failures)


def _pop(frontier: deque[int], graph: nx.MultiDiGraph, policy: Frontier) -> int:
    if policy == "breadth-first":
        return frontier.popleft()
    if policy == "depth-first":
        return frontier.pop()
    best = min(frontier, key=lambda n: graph.nodes[n]["point"].eigenvalues[0].item())
    frontier.remove(best)
    return best


def find_copy(
    problem: Problem, theta: Tensor, known: Iterable[tuple[int, Tensor]], spec: SearchSpec
) -> int | None:
    """The id of the known point that `theta` is a copy of, or None: a symmetric copy (relative
    distance after alignment below `merge_tol`) or, with `merge_by_function`, the same
    predictions. `known` yields (id, theta) pairs."""
    probabilities = _evaluation_probabilities(problem, theta) if spec.merge_by_function else None
    for node, other in known:
        candidate = problem.align(other, theta) if problem.align else theta
        if (other - candidate).norm().item() <= spec.merge_tol * (1 + other.norm().item()):
            return node
        if probabilities is not None:
            difference = (_evaluation_probabilities(problem, other) - probabilities).abs().max()
            if difference.item() < FUNCTION_MERGE_TOL:
                return node
    return None


def _evaluation_probabilities(problem: Problem, theta: Tensor) -> Tensor | None:
    """Class probabilities on the test split (the train split if there is none), or None."""
    if problem.predict is None or not problem.splits:
        return None
    inputs, _ = problem.splits.get("test", problem.splits.get("train"))
    return problem.predict(theta, inputs).softmax(1)
