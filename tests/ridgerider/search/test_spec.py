"""What a spec resolves to for a problem: how rides go."""

from __future__ import annotations

from ridgerider.problems.registry import load
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec
from ridgerider.search.spec import SMALL_MAX_STEP


def test_only_a_small_problems_ride_steps_grow_to_the_longest_small_step():
    """A small problem's eigenpairs are exact, so its ride steps may grow to SMALL_MAX_STEP
    times step_size (and its rides to minima are one such step, `steps._step_down`); a
    network's steps stay at step_size."""
    small, network = TreeMDP.build(4, 0).problem(), load("digits-mlp")
    spec = SearchSpec(step_size=0.05)
    assert spec.ride_config(small).max_step == SMALL_MAX_STEP == 64
    assert spec.ride_config(network).max_step == 1
    assert spec.ride_config(small).step_size == spec.ride_config(network).step_size == 0.05
