"""The default search exhausts the depth-5 tree MDP of seed 23 with every paying leaf: the
slowest of the depth-5 trees the tests search (130 s, 240 s on a CPU three times slower), in a
file of its own so that it runs beside the others (test files run on one worker each)."""

from __future__ import annotations

from ridgerider.problems.tree_mdp import TreeMDP
from tests.ridgerider.search.trees import assert_the_default_spec_exhausts


def test_the_default_spec_exhausts_the_depth_5_tree_of_seed_23_with_every_paying_leaf():
    """With no spec a depth-5 tree (31 parameters, 16 paying leaves) has no node budget and its
    minima are climbed from: the graph of minima and saddles is searched to the end and holds
    every paying leaf and only winners (KNOWN-ANSWERS)."""
    assert_the_default_spec_exhausts(TreeMDP.build(5, 23))
