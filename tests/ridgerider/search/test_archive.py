"""The archive finds every copy of a point through its index windows, as a full scan would."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import torch

from ridgerider.critical import classify
from ridgerider.problems.base import Problem
from ridgerider.problems.digits import digits_mlp_problem
from ridgerider.search import SearchSpec, find_copy, search
from ridgerider.search.archive import Keys, MemoryArchive, keys_of, window_of
from tests.ridgerider.problems.units import permute_units

WIDTHS = (64, 4, 10)


def test_a_symmetric_copy_is_found_through_the_loss_window_among_thousands():
    problem = digits_mlp_problem(hidden=4)
    spec = SearchSpec()
    generator = torch.Generator().manual_seed(0)
    archive = MemoryArchive()
    known = []
    for node in range(2000):
        theta = 0.3 * torch.randn(problem.dim, generator=generator, dtype=torch.float64)
        archive.add(node, theta, Keys(problem.loss(theta).item(), None, "saddle"))
        known.append((node, theta))
    order = torch.tensor([2, 0, 3, 1])
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    copy = permute_units(known[1][1], WIDTHS, [order], [signs])
    reached = classify(problem.loss, copy, probe=1, zero_modes=1)
    assert reached.kind == "saddle"
    candidates = archive.candidates(window_of(reached, keys_of(problem, reached, spec), spec))
    assert 1 in [node for node, _ in candidates]
    assert len(candidates) <= len(known) // 10  # neighbours in loss, not every node
    assert find_copy(problem, copy, candidates, spec) == 1
    assert find_copy(problem, copy, known, spec) == 1  # what a full scan finds


def test_the_function_window_holds_a_copy_no_alignment_declares():
    problem = digits_mlp_problem(hidden=4)
    spec = SearchSpec(merge_by_function=True)
    theta = 0.3 * torch.randn(problem.dim, generator=torch.Generator().manual_seed(1)).double()
    point = classify(problem.loss, theta, probe=1, zero_modes=1)
    keys = keys_of(problem, point, spec)
    archive = MemoryArchive()
    archive.add(
        7, theta, Keys(keys.loss + 1.0, keys.function, keys.kind)
    )  # far in loss, same function
    window = window_of(point, keys, spec)
    assert [node for node, _ in archive.candidates(window)] == [7]
    assert not window.loss[0] <= keys.loss + 1.0 <= window.loss[1]


def test_critical_points_closer_than_merge_tol_are_told_apart_by_the_slope_between_them():
    """Double wells about c = 3000, ridden from their maximum at c: every critical point lies
    within merge_tol (1 + ||theta||) = 5.2 of the others. Minima were merged into the maximum
    (a point without negative curvature is never a copy of one with it), then all 8 minima
    into one and the 12 saddles into the maximum (exact critical points are copies only where
    no slope lies between them); now the whole tree is found."""
    center = 3000.0
    problem = Problem(
        "far-wells",
        lambda t: ((t - center) ** 2 - 1).square().sum(),
        3,
        torch.full((3,), center, dtype=torch.float64),
    )
    result = search(problem, SearchSpec())
    corners = {tuple(round(x - center) for x in p.theta.tolist()) for p in result.points("minimum")}
    assert result.stopped == "frontier exhausted"
    assert corners == set(itertools.product((-1, 1), repeat=3))
    assert len(result.points("saddle")) == 12
    maximum = classify(problem.loss, problem.start)
    archive = MemoryArchive()
    archive.add(0, problem.start, keys_of(problem, maximum, SearchSpec()))
    near = classify(problem.loss, problem.start + 1e-3)  # the maximum's own neighbourhood
    for point, kept in ((result.points("minimum")[0], []), (near, [0])):
        window = window_of(point, keys_of(problem, point, SearchSpec()), SearchSpec())
        window = replace(window, loss=(-math.inf, math.inf))
        assert [node for node, _ in archive.candidates(window)] == kept
