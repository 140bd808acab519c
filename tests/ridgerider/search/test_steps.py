"""The search's steps: which climbs a minimum takes."""

from __future__ import annotations

from ridgerider.critical import classify
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec
from ridgerider.search.steps import climbs


def test_a_minimum_is_climbed_from_along_its_stiffest_directions_first():
    """A paying leaf of a depth-7 tree MDP (127 parameters, a seed no benchmark uses): its
    Hessian is diagonal, its path's 7 decisions stiff and the 120 unreached states one group at
    the entropy's curvature. Its climbs (one per group, both ways) go stiffest first: the 7 path
    decisions, whose rims lead to the other paying leaves, before the unreached states' group,
    so that a time budget runs them first."""
    tree = TreeMDP.build(7, 11)
    problem = tree.problem()
    theta = tree.deterministic_point(tree.solutions()[0])
    point = classify(problem.loss, theta)
    assert point.kind == "minimum"
    spectrum, rides, _ = climbs(problem, point, SearchSpec().resolved(problem))
    ups = [index for index, sign in rides if sign > 0]
    assert len(ups) == 8 and len(rides) == 16
    curvatures = [spectrum.values[index].item() for index in ups]
    assert curvatures == sorted(curvatures, reverse=True)
    path = {state for state in range(problem.dim) if abs(theta[state].item()) > 1}
    first = {int(spectrum.vectors[:, index].abs().argmax()) for index in ups[:7]}
    assert len(path) == 7 and first == path
