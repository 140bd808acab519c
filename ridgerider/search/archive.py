"""The archive of known points: is a new point a copy of one already in the tree?

A copy is a symmetric image (relative distance below `merge_tol` once aligned), or, with
`merge_by_function`, a model whose predicted probabilities agree to within 1e-4. Comparing a
new point with every known one costs an alignment per node; instead both kinds of copy are
looked up through a scalar invariant kept sorted (a range query in memory or in SQL):

- the loss, which every symmetry of a problem keeps by definition, and which a point within
  distance d of another differs from by at most d (|g| + ||H|| d), g and H at the new point
  (a margin of MERGE_WINDOW_SAFETY covers the curvature's change along the way);
- the mean predicted probability of the true class on the evaluation split, which two models
  whose probabilities agree to within 1e-4 share to within 1e-4.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ridgerider.critical import CriticalPoint, Kind, kinds_alike
from ridgerider.linalg.exact import loss_gradient
from ridgerider.metrics import SAME_FUNCTION_TOL
from ridgerider.problems.base import Problem
from ridgerider.search.spec import SearchSpec

MERGE_WINDOW_SAFETY = 4.0


@dataclass(frozen=True)
class Keys:
    """Where a point sits in the archive's indexes: its loss, its function key (None unless
    the search merges by function), and its kind."""

    loss: float
    function: float | None
    kind: Kind


@dataclass(frozen=True)
class Window:
    """The ranges of the indexes a copy of a point must fall in, and the kinds it may be."""

    loss: tuple[float, float]
    function: tuple[float, float] | None
    kinds: tuple[Kind, ...]


def keys_of(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> Keys:
    """The archive keys of `point`."""
    function = function_key(problem, point.theta) if spec.merge_by_function else None
    return Keys(point.loss, function, point.kind)


def window_of(point: CriticalPoint, keys: Keys, spec: SearchSpec) -> Window:
    """The index ranges that hold every copy of `point` (see the module doc)."""
    distance = spec.merge_tol * (1 + point.theta.norm().item())
    spread = MERGE_WINDOW_SAFETY * distance * (point.grad_norm + point.norm_estimate * distance)
    spread = max(spread, 1e-12 * (1 + abs(point.loss)))
    loss = (point.loss - spread, point.loss + spread)
    kinds = kinds_alike(point.kind)
    if keys.function is None:
        return Window(loss, None, kinds)
    function = (keys.function - SAME_FUNCTION_TOL, keys.function + SAME_FUNCTION_TOL)
    return Window(loss, function, kinds)


def function_key(problem: Problem, theta: Tensor) -> float | None:
    """The mean probability of the true class on the evaluation split (None without one)."""
    probabilities = evaluation_probabilities(problem, theta)
    if probabilities is None:
        return None
    _, labels = evaluation_split(problem)
    return probabilities.gather(1, labels[:, None]).mean().item()


def find_copy(
    problem: Problem,
    theta: Tensor,
    candidates: Iterable[tuple[int, Tensor]],
    spec: SearchSpec,
    critical_tol: float | None = None,
) -> int | None:
    """The id of the candidate that `theta` is a copy of, or None. `candidates` yields
    (id, theta) pairs: the points in the window, or any others.

    Given `critical_tol` (`theta` is an exact critical point), a candidate within `merge_tol` is
    a copy only where the gradient a third and two thirds of the way between the two is within
    it too: two critical points of one problem that lie closer than `merge_tol` (its wells
    1e-3 wide, or a thousand from the origin) have a slope between them (midway, between two
    mirror images, it may vanish), and two copies of one point have none."""
    probabilities = evaluation_probabilities(problem, theta) if spec.merge_by_function else None
    for node, other in candidates:
        candidate = problem.align(other, theta) if problem.align else theta
        if (other - candidate).norm().item() <= spec.merge_tol * (1 + other.norm().item()):
            if critical_tol is None:
                return node
            if all(
                loss_gradient(problem.loss, other + t * (candidate - other)).norm().item()
                <= critical_tol
                for t in (1 / 3, 2 / 3)
            ):
                return node
        if probabilities is not None:
            difference = (evaluation_probabilities(problem, other) - probabilities).abs().max()
            if difference.item() < SAME_FUNCTION_TOL:
                return node
    return None


def evaluation_probabilities(problem: Problem, theta: Tensor) -> Tensor | None:
    """Class probabilities on the test split (the train split if there is none), or None."""
    if problem.predict is None or not problem.splits:
        return None
    inputs, _ = evaluation_split(problem)
    with torch.no_grad():
        return problem.probabilities(theta, inputs)


def evaluation_split(problem: Problem) -> tuple[Tensor, Tensor]:
    """The split behaviour is compared on: test, else train."""
    return problem.splits.get("test", problem.splits.get("train"))


@dataclass
class MemoryArchive:
    """Known points in memory, indexed by their keys in sorted lists."""

    thetas: dict[int, Tensor] = field(default_factory=dict)
    keys: dict[int, Keys] = field(default_factory=dict)
    by_loss: list[tuple[float, int]] = field(default_factory=list)
    by_function: list[tuple[float, int]] = field(default_factory=list)

    def add(self, node: int, theta: Tensor, keys: Keys) -> None:
        self.thetas[node], self.keys[node] = theta, keys
        bisect.insort(self.by_loss, (keys.loss, node))
        if keys.function is not None:
            bisect.insort(self.by_function, (keys.function, node))

    def replace(self, node: int, theta: Tensor, keys: Keys) -> None:
        """Node `node` now holds `theta` (a copy of its old point) with `keys`."""
        old = self.keys[node]
        self.by_loss.remove((old.loss, node))
        if old.function is not None:
            self.by_function.remove((old.function, node))
        self.add(node, theta, keys)

    def candidates(self, window: Window) -> list[tuple[int, Tensor]]:
        """The known points inside `window`, by id."""
        found = set(_in_range(self.by_loss, window.loss))
        if window.function is not None:
            found |= set(_in_range(self.by_function, window.function))
        alike = (node for node in sorted(found) if self.keys[node].kind in window.kinds)
        return [(node, self.thetas[node]) for node in alike]


def _in_range(index: list[tuple[float, int]], bounds: tuple[float, float]) -> list[int]:
    low = bisect.bisect_left(index, (bounds[0], -1))
    high = bisect.bisect_right(index, (bounds[1], float("inf")))
    return [node for _, node in index[low:high]]
