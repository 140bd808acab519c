"""The Ridge Rider tree (a DAG of critical points): expand saddles, ride ridges, merge repeats."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx
import torch

from ridgerider.critical import CriticalPoint, SettleConfig, classify, settle
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.base import Problem
from ridgerider.ride import RideConfig, ride

Frontier = Literal["breadth-first", "depth-first", "most-negative-first"]


@dataclass(frozen=True)
class SearchConfig:
    """Budgets and policies of one search.

    Attributes:
        frontier: which saddle is expanded next.
        max_nodes: stop after this many distinct critical points.
        max_depth: saddles deeper than this are not expanded.
        ridges_per_node: at most this many negative eigenvectors are ridden (both signs each).
        merge_tol: two critical points are one when their distance is below
            merge_tol * (1 + ||theta||).
    """

    frontier: Frontier = "breadth-first"
    max_nodes: int = 100
    max_depth: int = 10
    ridges_per_node: int = 8
    merge_tol: float = 1e-4
    ride: RideConfig = field(default_factory=RideConfig)
    settle: SettleConfig = field(default_factory=SettleConfig)


@dataclass(frozen=True)
class FailedRide:
    """A ride that ended without a critical point (a NaN loss, say), so the search went on."""

    node: int
    eigen_index: int
    sign: int
    reason: str


@dataclass
class SearchResult:
    """The DAG (node attributes: the CriticalPoint as `point`, `depth`; edge attributes: the ride
    labels), the rides that failed, and the number of HVPs spent."""

    graph: nx.MultiDiGraph
    hvps: int
    failures: list[FailedRide] = field(default_factory=list)

    def points(self, kind: str | None = None) -> list[CriticalPoint]:
        return [
            data["point"]
            for _, data in self.graph.nodes(data=True)
            if kind is None or data["point"].kind == kind
        ]


def search(problem: Problem, config: SearchConfig = SearchConfig()) -> SearchResult:
    """Ride every ridge from the problem's start, recursively, until the budgets end."""
    if problem.start is None:
        raise ValueError(f"problem {problem.name!r} has no start point; give one")
    graph = nx.MultiDiGraph()
    root = classify(problem.loss, problem.start, zero_modes=problem.zero_modes)
    hvps = root.hvps
    graph.add_node(0, point=root, depth=0)
    frontier: deque[int] = deque([0] if root.index > 0 else [])
    failures: list[FailedRide] = []
    while frontier and graph.number_of_nodes() < config.max_nodes:
        node = _pop(frontier, graph, config.frontier)
        point = graph.nodes[node]["point"]
        depth = graph.nodes[node]["depth"]
        if depth >= config.max_depth:
            continue
        k = min(point.index, config.ridges_per_node)
        ridges = eigsh(HessianOperator(problem.loss, point.theta), k, "SA")
        hvps += ridges.info.matvecs
        for index in range(k):
            for sign in (1, -1):
                direction = sign * ridges.eigenvectors[:, index]
                end = ride(problem.loss, point.theta, direction, config.ride)
                hvps += end.hvps
                if end.reason == "non-finite-loss":
                    failures.append(FailedRide(node, index, sign, "the loss turned NaN or Inf"))
                    continue
                try:
                    theta, settle_hvps = settle(problem.loss, end.theta, config.settle)
                    child = classify(problem.loss, theta, zero_modes=problem.zero_modes)
                except FloatingPointError as error:
                    failures.append(FailedRide(node, index, sign, f"settling failed: {error}"))
                    continue
                hvps += settle_hvps + child.hvps
                target = _find(graph, problem, theta, config.merge_tol)
                if target is None:
                    target = graph.number_of_nodes()
                    graph.add_node(target, point=child, depth=depth + 1)
                    if child.index > 0:
                        frontier.append(target)
                graph.add_edge(
                    node,
                    target,
                    eigen_index=index,
                    sign=sign,
                    eigenvalue=ridges.eigenvalues[index].item(),
                    steps=end.steps,
                    hvps=end.hvps + settle_hvps,
                    end_reason=end.reason,
                )
    return SearchResult(graph, hvps, failures)


def _pop(frontier: deque[int], graph: nx.MultiDiGraph, policy: Frontier) -> int:
    if policy == "breadth-first":
        return frontier.popleft()
    if policy == "depth-first":
        return frontier.pop()
    best = min(frontier, key=lambda n: graph.nodes[n]["point"].eigenvalues[0].item())
    frontier.remove(best)
    return best


def _find(graph: nx.MultiDiGraph, problem: Problem, theta: torch.Tensor, tol: float) -> int | None:
    """The node holding `theta` or a symmetric copy of it (distance after alignment)."""
    for node, data in graph.nodes(data=True):
        other = data["point"].theta
        candidate = problem.align(other, theta) if problem.align else theta
        if (other - candidate).norm().item() <= tol * (1 + other.norm().item()):
            return node
    return None
