"""The default search exhausts depth-5 tree MDPs with every paying leaf: apart from
test_loop.py, whose file runs on one test worker, since each tree takes tens of seconds (the
slowest tree has a file of its own, test_loop_depth_5_seed_23.py, so that the two run on
different workers)."""

from __future__ import annotations

from ridgerider.problems.tree_mdp import TreeMDP, default_entropy
from tests.ridgerider.search.trees import assert_the_default_spec_exhausts


def test_the_default_spec_exhausts_a_depth_5_tree_with_every_paying_leaf():
    """With no spec a depth-5 tree (31 parameters, 16 paying leaves) has no node budget and its
    minima are climbed from: the graph of minima and saddles is searched to the end, on a tree
    no benchmark draws (seed 22), and holds every paying leaf and only winners (KNOWN-ANSWERS).
    30 s since climbs land on saddles of higher index (bench/RESULTS.md; 100 s on a CPU three
    times slower)."""
    assert_the_default_spec_exhausts(TreeMDP.build(5, 22))


def test_the_default_spec_exhausts_a_depth_5_tree_of_a_low_entropy_with_every_paying_leaf():
    """At 0.64 times the default entropy (seed 1) no interior saddle lies between leaf 24 and
    leaf 26, only corners of high index, and the climb from leaf 24 passed over one with long
    steps, fell back into a basin and converged onto leaf 24's minimum with an unreached state
    flipped: 15 of 16. Retaken with shorter steps after falling back, it lands beyond."""
    tree = TreeMDP.build(5, 1, entropy=0.64 * default_entropy(5))
    assert_the_default_spec_exhausts(tree)
