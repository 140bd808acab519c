"""Budgets: the node quota split down the tree, and the running budgets."""

from __future__ import annotations

import itertools

import pytest
import torch

from ridgerider.problems.base import Problem
from ridgerider.problems.classic import styblinski_tang
from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search
from ridgerider.search.budget import RidesFrom, climb_grant, quota_of, shares, stop_reason
from ridgerider.search.frontier import frontier_key, search_frontier
from ridgerider.search.loop import begin, grant_waiting, work_on
from ridgerider.search.memory import MemoryTree


def test_shares_split_evenly_and_the_first_rides_take_the_rest():
    assert shares(11, 4) == [3, 3, 3, 2]
    assert shares(3, 4) == [1, 1, 1, 0]
    assert shares(0, 2) == [0, 0]
    assert sum(shares(999, 7)) == 999


def test_a_quota_follows_from_the_path_alone():
    taken = {
        (): RidesFrom([(0, 1), (0, -1), (1, 1)], {}),
        ((0, -1),): RidesFrom([(0, 1), (0, -1)], {(1, 1): 40}),
    }
    assert quota_of((), 10, taken.__getitem__) == 10
    assert quota_of(((1, 1),), 10, taken.__getitem__) == 3  # 9 shared by 3 rides
    assert quota_of(((0, -1), (0, -1)), 10, taken.__getitem__) == 1  # 3 - 1 shared by 2
    assert quota_of(((0, -1), (1, 1)), 10, taken.__getitem__) == 40  # a climb granted 40


def test_unused_points_go_to_every_climb_waiting_or_to_none():
    assert climb_grant(20, 6) == 3  # 3 points for each, 2 left over
    assert climb_grant(17, 6) == 0  # not 3 for each: none is granted
    assert climb_grant(100_000, 7) == 14_285
    assert climb_grant(-4, 1) == climb_grant(9, 0) == 0


def tree_in_order(problem, spec, order: str) -> MemoryTree:
    """The tree of `spec` with its units taken in `order`'s frontier (a pool takes them in an
    order that timing decides; any order must leave the same tree)."""
    tree = MemoryTree(problem, spec)
    begin(tree, problem, spec)
    key = frontier_key(order)
    while True:
        while (unit := tree.claim(key)) is not None:
            work_on(tree, problem, spec, unit)
        if not grant_waiting(tree, problem, spec):
            return tree


@pytest.mark.parametrize("max_nodes", [5, 20, 40])
def test_a_node_budget_leaves_the_same_tree_whatever_order_the_units_run_in(max_nodes):
    problem = styblinski_tang(4)
    spec = SearchSpec(max_nodes=max_nodes)
    trees = [tree_in_order(problem, spec, order) for order in ("dive", "breadth-first")]
    found = [torch.stack([d["point"].theta for _, d in t.graph.nodes(data=True)]) for t in trees]
    assert len(found[0]) == len(found[1]) <= max_nodes
    assert torch.cdist(found[0], found[1]).min(1).values.max() < 1e-8  # a copy reached twice
    assert trees[0].stopped == trees[1].stopped == "node budget"


def test_rides_the_quota_allows_one_point_end_in_minima():
    """Quota 1: the ride's end is a leaf, descended to a minimum, never a saddle left open."""
    result = search(styblinski_tang(3), SearchSpec(max_nodes=7))
    kinds = [result.graph.nodes[n]["point"].kind for n in result.graph.nodes if n]
    assert kinds and set(kinds) == {"minimum"}


def first_ride_end(problem, deadline: float | None):
    """The point the start's first ride reaches, the ride run with a time budget `deadline`
    seconds after it starts (None: no budget)."""
    tree = MemoryTree(problem, SearchSpec())
    begin(tree, problem, tree.spec)
    key = search_frontier(tree.spec, problem)
    work_on(tree, problem, tree.spec, tree.claim(key))  # the start's expansion
    ride = tree.claim(key)
    spec = tree.spec
    if deadline is not None:
        spec = spec.model_copy(update={"max_seconds": tree.progress().seconds + deadline})
    work_on(tree, problem, spec, ride)
    (end,) = [d["point"] for n, d in tree.graph.nodes(data=True) if n]
    return end


def test_a_time_budget_turns_the_rides_in_flight_into_leaves():
    """The time budget runs out while the start's first ride is under way: its end is polished
    to a minimum, not left as a branch point that nobody will expand."""
    problem = load("digits-mlp:hidden=4")
    assert first_ride_end(problem, None).kind == "branch"  # with time to go on
    end = first_ride_end(problem, 0.01)
    assert end.kind == "minimum" and end.index == 0


def test_climbs_a_share_cannot_hold_wait_for_the_points_the_tree_leaves_unused():
    """Styblinski-Tang dim 3 (27 points): under max_nodes = 200 the minima's shares of the quota
    split down the tree hold 5 of their 48 climbs at 3 points a climb, and the other 43 wait;
    once the tree is still, the 173 points it did not use are granted to them, 4 each, and the
    search is the one without a node budget, its frontier exhausted. Under max_nodes = 100 the
    shares hold none, and the 73 points left cannot give each of the 48 its 3: none is granted,
    and the 48 are skipped, saying so."""
    budgeted = search(styblinski_tang(3), SearchSpec(max_nodes=200, max_depth=20))
    free = search(styblinski_tang(3), SearchSpec(max_depth=20))
    tight = search(styblinski_tang(3), SearchSpec(max_nodes=100, max_depth=20))

    def climbs(result):
        edges = result.graph.edges(data=True)
        return sum(data["end_reason"].startswith("climb") for *_, data in edges)

    assert budgeted.stopped == free.stopped == "frontier exhausted"
    assert len(budgeted.points("minimum")) == 8 and climbs(budgeted) == climbs(free) == 8 * 6
    assert budgeted.open == {"expansions": 0, "rides": 0}
    assert tight.stopped == "node budget" and tight.open == {"expansions": 0, "rides": 48}
    assert len(tight.points("minimum")) == 8 and climbs(tight) == 0


def test_a_node_budget_the_tree_never_needs_cuts_no_climb():
    """A cube of three-well coordinates (27 minima, x^6/6 - 5x^4/4 + 2x^2 scaled 1, 3, 0.3)
    from its maximum under max_nodes = 100000: the deepest minima's shares of the quota split
    down the tree hold some of their six climbs, not all. Taking none lost one minimum; taking
    the stiffest that fit found all 27 but said "node budget"; the rest now wait for the
    points the tree left unused, and the search ends as it would with no budget."""
    scales = torch.tensor([1.0, 3.0, 0.3], dtype=torch.float64)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return (scales * (t**6 / 6 - 5 * t**4 / 4 + 2 * t**2)).sum()

    problem = Problem("three-wells", loss, 3, torch.ones(3, dtype=torch.float64))
    result = search(problem, SearchSpec(max_nodes=100_000))
    cells = {tuple(round(x / 2) for x in p.theta.tolist()) for p in result.points("minimum")}
    assert result.stopped == "frontier exhausted"
    assert cells == set(itertools.product((-1, 0, 1), repeat=3))


def test_a_search_cut_by_max_depth_says_so():
    """Styblinski-Tang dim 3: the start's rides reach 4 of the 8 minima, and climbs from them the
    rest, a level deeper; at max_depth 1 the saddles those climbs reach are left unexpanded."""
    shallow = search(styblinski_tang(3), SearchSpec(max_depth=1))
    deep = search(styblinski_tang(3), SearchSpec(max_depth=20))
    assert shallow.stopped == "depth limit" and len(shallow.points("minimum")) < 8
    assert deep.stopped == "frontier exhausted" and len(deep.points("minimum")) == 8


def test_a_search_whose_ridges_per_node_leaves_a_ridge_unridden_says_so():
    """Styblinski-Tang dim 3: the start is a maximum, three negative directions; two ridges a
    node leave one of them unridden, three ride them all."""
    capped = search(styblinski_tang(3), SearchSpec(ridges_per_node=2))
    whole = search(styblinski_tang(3), SearchSpec(ridges_per_node=3))
    assert capped.stopped == "ridge cap"
    assert whole.stopped == "frontier exhausted" and len(whole.points("minimum")) == 8


def test_a_depth_limit_the_tree_does_not_reach_cuts_nothing():
    """Styblinski-Tang dim 2: its whole tree is 9 points, none deeper than 3 rides, and every
    deeper ride reaches a point found before; at max_depth 4 it is the tree of max_depth 64, and
    the search says that its frontier was exhausted, not cut."""
    for spec in (SearchSpec(max_depth=4), SearchSpec(settle="saddle", max_depth=4)):
        shallow = search(styblinski_tang(2), spec)
        deep = search(styblinski_tang(2), spec.model_copy(update={"max_depth": 64}))
        assert shallow.graph.number_of_nodes() == deep.graph.number_of_nodes() == 9
        assert shallow.stopped == deep.stopped == "frontier exhausted"


def test_the_stop_reason_does_not_depend_on_the_order_the_cuts_came_in():
    """A pool ends its units in another order than one runner: the depth limit gives way to the
    node budget, the ridge cap to both, and all to a running budget, whichever came first;
    otherwise the first stays."""
    for reasons, kept in (
        (["ridge cap", "depth limit"], "depth limit"),
        (["node budget", "ridge cap"], "node budget"),
        (["ridge cap", "HVP budget"], "HVP budget"),
        (["depth limit", "node budget"], "node budget"),
        (["node budget", "depth limit"], "node budget"),
        (["depth limit", "time budget", "node budget"], "time budget"),
        (["HVP budget", "time budget"], "HVP budget"),
    ):
        current = None
        for reason in reasons:
            current = stop_reason(current, reason)
        assert current == kept, reasons
