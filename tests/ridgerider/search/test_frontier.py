"""Frontier orders on hand-made units: what each policy takes next."""

from __future__ import annotations

import pytest

from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec
from ridgerider.search.fingerprint import deviations, from_text, to_text
from ridgerider.search.frontier import Unit, climb_rank, frontier_key, search_frontier

DIM = 10  # the problem's parameters, for the climbs' ranks


def ride(unit_id: int, parent: int, depth: int, path: str, value: float = -1.0) -> Unit:
    return Unit("ride", unit_id, "ride", parent, depth, from_text(path), value)


def node(node_id: int, depth: int, path: str, work: str = "expand", value: float = -1.0) -> Unit:
    return Unit("node", node_id, work, node_id, depth, from_text(path), value)


@pytest.mark.parametrize("text", ["", "0+", "0+.8-.12+", "0+.8-.5++", "3--"])
def test_fingerprints_round_trip(text):
    assert to_text(from_text(text)) == text


def test_a_retaken_climb_is_its_sign_doubled():
    assert from_text("0+.5++.2--") == ((0, 1), (5, 2), (2, -2))


@pytest.mark.parametrize("text", ["0", "+0", "0+..1-", "a+", "0+.-1+", "0+-", "0+++"])
def test_a_malformed_fingerprint_is_refused(text):
    with pytest.raises(ValueError, match="fingerprint"):
        from_text(text)


def test_deviations_count_the_rides_below_the_start_that_were_not_first_choices():
    assert deviations(from_text("3-.0+.0+")) == 0
    assert deviations(from_text("0+.0-.1+.0+")) == 2


def test_dive_follows_each_start_ridge_down_before_deviating():
    units = [
        ride(1, 0, 0, "0-"),  # the start's second ride
        node(5, 2, "0+.0+"),  # the first dive, two rides down
        ride(2, 3, 1, "0+.1+"),  # a deviation one ride down
        ride(3, 4, 2, "0+.0+.0-"),  # a deviation two rides down
        node(6, 1, "1+"),  # the dive of the start's third ridge
        node(7, 3, "0+.0-.0+", work="evaluate"),  # a solution to evaluate
    ]
    key = frontier_key("dive")
    order = [u.id for u in sorted(units, key=key)]
    assert order == [7, 5, 1, 6, 3, 2]


def test_dive_takes_every_minimum_s_stiff_climbs_before_any_soft_one():
    """Climbs (positive eigenvalues) from two minima: the stiffest (eigen index DIM - 1) of
    each before the softer ones of either; a climb's rank adds to its discrepancies."""
    units = [
        ride(1, 4, 2, "0+.0+.9+", value=3.0),  # the deep minimum's stiffest climb
        ride(2, 4, 2, "0+.0+.4+", value=0.2),  # its sixth stiffest
        ride(3, 5, 1, "1+.9+", value=2.0),  # the shallow minimum's stiffest
        ride(4, 5, 1, "1+.8-", value=1.5),  # its second stiffest, - sign
        ride(5, 6, 3, "0+.0+.9+.0-", value=-0.5),  # down the far side of a climbed saddle
    ]
    assert [climb_rank(u, DIM) for u in units] == [0, 5, 0, 1, 0]
    assert [u.id for u in sorted(units, key=frontier_key("dive", DIM))] == [1, 3, 5, 4, 2]
    # Unranked, every climb is one deviation: the deep minimum's climbs both come first.
    assert [u.id for u in sorted(units, key=frontier_key("dive"))] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("fields", "ranked"),
    [
        ({}, True),
        ({"settle": "minimum"}, True),
        ({"settle": "branch"}, False),
        ({"max_nodes": 50}, False),
    ],
)
def test_climbs_are_ranked_where_the_search_hops_between_minima(fields, ranked):
    problem = load("tree-mdp:depth=4")
    spec = SearchSpec(**fields)
    assert spec.hops(problem) is ranked
    soft = ride(1, 4, 1, "0+.0+", value=0.1)  # the softest climb of a minimum
    stiff = ride(2, 5, 0, f"{problem.dim - 1}+", value=2.0)  # a stiffest one, shallower
    key = search_frontier(spec, problem)
    assert [u.id for u in sorted([soft, stiff], key=key)] == ([2, 1] if ranked else [1, 2])


def test_a_network_does_not_hop():
    assert not SearchSpec().hops(load("digits-mlp:hidden=2"))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("breadth-first", [1, 2, 3]),
        ("depth-first", [3, 2, 1]),
        ("most-negative-first", [2, 3, 1]),
    ],
)
def test_the_other_policies(policy, expected):
    units = [
        ride(1, 0, 0, "0+", value=-0.1),
        ride(2, 1, 1, "0+.0+", value=-2.0),
        ride(3, 2, 2, "0+.0+.0+", value=-1.0),
    ]
    assert [u.id for u in sorted(units, key=frontier_key(policy))] == expected
