"""The tree-MDP known answer that search tests check: the default spec exhausts the tree."""

from __future__ import annotations

from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchResult, SearchSpec, search


def assert_the_default_spec_exhausts(tree: TreeMDP) -> SearchResult:
    """Search `tree` with no spec and check that its frontier is exhausted with every paying
    leaf among the minima's greedy leaves, and only winners (KNOWN-ANSWERS)."""
    result = search(tree.problem(), SearchSpec())
    leaves = {tree.greedy_leaf(p.theta) for p in result.points("minimum")}
    assert result.stopped == "frontier exhausted", result.stopped
    paying, winners = set(tree.solutions()), set(tree.winners.tolist())
    assert paying <= leaves, f"paying leaves missed: {paying - leaves}"
    assert leaves <= winners, f"minima whose greedy leaf is no winner: {leaves - winners}"
    return result
