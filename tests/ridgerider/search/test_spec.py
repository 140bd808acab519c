"""What a spec resolves to for a problem: how rides go."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"max_nodes": True}, "max_nodes\n  Input should be a valid integer"),
        ({"max_nodes": "5"}, "max_nodes\n  Input should be a valid integer"),
        ({"reproducible": "yes"}, "reproducible\n  Input should be a valid boolean"),
        ({"max_seconds": float("inf")}, "max_seconds\n  Input should be a finite number"),
        ({"max_seconds": 1e400}, "max_seconds\n  Input should be a finite number"),
    ],
)
def test_a_spec_takes_no_number_that_is_not_one(fields, error):
    """The library and the command line are as strict as HTTP: `max_nodes = true` was a budget
    of one point, `1e400` seconds no budget at all."""
    with pytest.raises(ValidationError, match=error):
        SearchSpec.model_validate(fields)


def test_a_spec_takes_integers_for_seconds_and_sizes():
    spec = SearchSpec.model_validate({"max_seconds": 5, "step_size": 1, "max_nodes": 10})
    assert (spec.max_seconds, spec.step_size, spec.max_nodes) == (5.0, 1.0, 10)
