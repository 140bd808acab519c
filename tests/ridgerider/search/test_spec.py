"""What a spec resolves to for a problem: how rides go."""

from __future__ import annotations

import pytest

from ridgerider.problems.registry import load
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec


def test_only_a_small_problems_rides_to_minima_end_where_their_ridge_turned_away():
    """A ride that a descent ends turns no further than 45 degrees; a ride to a branch point or
    a saddle, or on a network, rides its ridge as far as it goes."""
    small, network = TreeMDP.build(4, 0).problem(), load("digits-mlp")
    spec = SearchSpec()
    assert spec.ride_config(small, "minimum").min_alignment == pytest.approx(2**-0.5)
    assert spec.ride_config(small, "branch").min_alignment is None
    assert spec.ride_config(small, "saddle").min_alignment is None
    assert spec.ride_config(network, "minimum").min_alignment is None
