"""The search's steps: their seeding, which climbs a minimum takes, and where an index-1
saddle's sides lead."""

from __future__ import annotations

import itertools

import pytest
import torch

from ridgerider.critical import CriticalPoint, classify, rounding_floor, settle
from ridgerider.problems.base import Problem
from ridgerider.problems.classic import himmelblau
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec, search
from ridgerider.search.ridges import make_ridge, spectrum_at
from ridgerider.search.steps import (
    _short_of_critical,
    climbs,
    critical_tolerance,
    follow,
    seed_generators,
)
from tests.known_answers import (
    HIMMELBLAU_MAXIMUM,
    HIMMELBLAU_MINIMA,
    HIMMELBLAU_SADDLE_MINIMA,
    HIMMELBLAU_SADDLES,
)
from tests.problems import tanh_regressor


def test_a_step_s_seeding_draws_what_torch_manual_seed_does():
    """`seed_generators` (the cheap seeding every step starts with) leaves the CPU generator
    in the state `torch.manual_seed` does, so a step's draws are the same with either."""
    seed_generators(7)
    ours = torch.randn(5, dtype=torch.float64)
    torch.manual_seed(7)
    assert torch.equal(ours, torch.randn(5, dtype=torch.float64))
    seed_generators(8)
    assert not torch.equal(ours, torch.randn(5, dtype=torch.float64))


def test_a_minimum_is_climbed_from_along_its_stiffest_directions_first():
    """A paying leaf of a depth-7 tree MDP (127 parameters, a seed no benchmark uses): its
    Hessian is diagonal, its path's 7 decisions stiff and the 120 unreached states one group at
    the entropy's curvature. Its climbs (one per group) go stiffest first: the 7 path
    decisions, whose rims lead to the other paying leaves, before the unreached states' group,
    so that a time budget runs them first. A path state sits at theta = +-pi/2, where its two
    ways are mirror images (theta and pi - theta are one policy): it is climbed one way; the
    unreached state's two ways (towards p = 1 and p = 0) are different policies: both."""
    tree = TreeMDP.build(7, 11)
    problem = tree.problem()
    theta = tree.deterministic_point(tree.solutions()[0])
    point = classify(problem.loss, theta)
    assert point.kind == "minimum"
    spectrum, rides, _ = climbs(problem, point, SearchSpec().resolved(problem))
    ups = [index for index, sign in rides if sign > 0]
    downs = [index for index, sign in rides if sign < 0]
    assert len(ups) == 8 and downs == ups[-1:]
    curvatures = [spectrum.values[index].item() for index in ups]
    assert curvatures == sorted(curvatures, reverse=True)
    path = {state for state in range(problem.dim) if abs(theta[state].item()) > 1}
    first = {int(spectrum.vectors[:, index].abs().argmax()) for index in ups[:7]}
    assert len(path) == 7 and first == path


def _sides(point) -> list:
    """Where `follow`, settling on minima, leads from `point` down both sides of its most
    negative ridge."""
    problem = himmelblau()
    spec = SearchSpec().resolved(problem)
    spectrum = spectrum_at(problem, point.theta, 2)
    return [
        follow(problem, point, make_ridge(0, spectrum, 0, sign, 2), spec, "minimum")
        for sign in (1, -1)
    ]


def _minimum_index(theta: torch.Tensor) -> int:
    distances = (HIMMELBLAU_MINIMA - theta).norm(dim=1)
    assert distances.min() < 1e-5
    return int(distances.argmin())


@pytest.mark.parametrize(
    ("saddle", "joined"), list(zip(HIMMELBLAU_SADDLES, HIMMELBLAU_SADDLE_MINIMA, strict=True))
)
def test_the_sides_of_an_index_1_saddle_descend_to_the_two_minima_it_joins(saddle, joined):
    """Rides to minima from an index-1 saddle of a small problem are descents (no ridge
    tracked): each side of Himmelblau's four saddles reaches one of the two minima the saddle
    joins, the two sides different ones."""
    problem = himmelblau()
    point = classify(problem.loss, settle(problem.loss, saddle)[0])
    assert point.kind == "saddle" and point.index == 1
    outcomes = _sides(point)
    assert [outcome.end_reason for outcome in outcomes] == ["descended", "descended"]
    assert all(outcome.point.kind == "minimum" for outcome in outcomes)
    assert {_minimum_index(outcome.point.theta) for outcome in outcomes} == joined


def test_from_a_point_of_higher_index_each_ridge_is_one_step_and_a_descent():
    """Himmelblau's maximum (index 2): no ridge is tracked; one step down each side of each of
    its two ridges and a descent reach the four minima around it (KNOWN-ANSWERS), one each."""
    problem = himmelblau()
    point = classify(problem.loss, settle(problem.loss, HIMMELBLAU_MAXIMUM)[0])
    assert point.kind == "maximum" and point.index == 2
    spec = SearchSpec().resolved(problem)
    spectrum = spectrum_at(problem, point.theta, 2)
    outcomes = [
        follow(problem, point, make_ridge(0, spectrum, index, sign, 2), spec, "minimum")
        for index in (0, 1)
        for sign in (1, -1)
    ]
    assert all(o.end_reason == "descended" and o.steps == 0 for o in outcomes)
    assert sorted(_minimum_index(o.point.theta) for o in outcomes) == [0, 1, 2, 3]


def rotated_wells(seed: int) -> tuple[Problem, torch.Tensor]:
    """f(x) = sum(((Q x)_i^2 - 1)^2) in 3-D, Q a seeded rotation, from its maximum at 0 (the
    Hessian -4 I), and its 8 minima Q^T s, s in {-1, 1}^3 (one row each)."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    corners = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3)), dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (((q @ x) ** 2 - 1) ** 2).sum()

    return Problem("rotated-wells", loss, 3, torch.zeros(3, dtype=torch.float64)), corners @ q


@pytest.mark.parametrize("target", ["saddle", "branch"])
def test_a_ridge_that_turns_within_its_first_step_is_descended_from_instead(target):
    """At 0 the Hessian is -4 I: the canonical ridges are the coordinate axes, and the
    landscape's (the rows of Q) are not among them, so a ride along an axis turns within its
    shortest step. Such a ride descends from one long step along its ridge instead, to a
    minimum; it used to end where it began, and a search settling on saddles found no minimum."""
    problem, minima = rotated_wells(seed=4)
    spec = SearchSpec().resolved(problem)
    point = classify(problem.loss, problem.start)
    spectrum = spectrum_at(problem, point.theta, 3)
    for index, sign in itertools.product(range(3), (1, -1)):
        outcome = follow(problem, point, make_ridge(0, spectrum, index, sign, 2), spec, target)
        assert outcome.end_reason == "descended" and outcome.point.kind == "minimum"
        assert torch.cdist(outcome.point.theta[None], minima).min() < 1e-8


@pytest.mark.parametrize("settle", ["saddle", "branch"])
def test_a_search_from_a_fully_repeated_eigenvalue_finds_every_minimum(settle):
    for seed in range(3):
        problem, minima = rotated_wells(seed)
        result = search(problem, SearchSpec(settle=settle))
        found = torch.stack([point.theta for point in result.points("minimum")])
        assert result.stopped == "frontier exhausted" and len(found) == 8, seed
        assert torch.cdist(found, minima).min(0).values.max() < 1e-8, seed


@pytest.mark.parametrize(("seed", "hidden"), [(4, 5), (5, 3)])
def test_a_saddle_ride_that_settles_back_on_its_start_descends_to_a_minimum(seed, hidden):
    """From the zero point one ride (the hidden units are one group) settles on a saddle where
    one unit is active and the others are dead: its negative curvature, along the dead units,
    is about -1e-6, and each ride along it settled back on that saddle. The search settling on
    saddles (no climbs from minima) ended at once with no minimum, the saddle's rides looping
    back to it; such a ride now descends to a minimum from its end, as a leaf's descent does."""
    spec = SearchSpec(settle="saddle", climb_minima=False)
    result = search(tanh_regressor(seed, hidden)[0], spec)
    assert result.stopped == "frontier exhausted" and not result.failures
    assert result.points("minimum")
    assert all(source != target for source, target in result.graph.edges())


def test_a_loss_of_a_large_scale_settles_to_its_rounding_floor():
    """Himmelblau times 1e8 (||H|| about 1e10): Newton's polish stops at gradients of 1e-6 to
    7e-6, rounding at that scale; they count as critical (`critical_tolerance`), and the four
    minima are found, where three rides used to fail short of the tolerance 1e-6."""
    plain = himmelblau()
    problem = Problem("himmelblau-1e8", lambda x: 1e8 * plain.loss(x), 2, plain.start)
    result = search(problem, SearchSpec())
    found = torch.stack([point.theta for point in result.points("minimum")])
    assert not result.failures and len(found) == 4
    assert torch.cdist(found, HIMMELBLAU_MINIMA).min(0).values.max() < 1e-5


def test_a_step_down_onto_an_infinite_loss_fails_that_ride_as_a_nan_does():
    """(x^2 - 1)^2 + y^2, infinite where x > 0.5, from its saddle at 0: the ride towards x > 0
    fails as a ride into NaN does (it used to descend from the infinite loss back to the
    saddle, no failure); the other side reaches the minimum (-1, 0)."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        wall = torch.where(x[0] > 0.5, torch.inf, 0.0)
        return (x[0] ** 2 - 1) ** 2 + x[1] ** 2 + wall

    problem = Problem("walled-well", loss, 2, torch.zeros(2, dtype=torch.float64))
    point = classify(problem.loss, problem.start)
    spec = SearchSpec().resolved(problem)
    spectrum = spectrum_at(problem, point.theta, 2)
    outcomes = {
        sign: follow(problem, point, make_ridge(0, spectrum, 0, sign, 2), spec, "minimum")
        for sign in (1, -1)
    }
    walled = [o for o in outcomes.values() if o.failure is not None]
    reached = [o for o in outcomes.values() if o.point is not None]
    assert len(walled) == 1 and walled[0].end_reason == "non-finite-loss"
    assert len(reached) == 1 and torch.allclose(
        reached[0].point.theta, torch.tensor([-1.0, 0.0]).double()
    )


def test_rides_down_a_loss_unbounded_below_fail_asking_whether_it_is_bounded():
    problem = Problem("saddle", lambda x: x[0] ** 2 - x[1] ** 2, 2, torch.zeros(2).double())
    result = search(problem, SearchSpec())
    assert len(result.failures) == 2 and not result.points("minimum")
    assert all("is the loss bounded below?" in o.failure for o in result.failures)


def test_a_point_short_of_critical_says_which_tolerance_it_missed():
    """A saddle settled in float32 with ||H|| = 100 stops at a gradient of 1e-3, above the
    tolerance, which is float32's rounding floor there (8 eps ||H|| (1 + ||theta||)), not
    `grad_tol`: the message says so and asks for float64, not a larger grad_tol; in float64
    the tolerance is grad_tol's, and the message names it."""

    def point(dtype: torch.dtype, grad_norm: float) -> CriticalPoint:
        theta = torch.full((4,), 0.5, dtype=dtype)
        values = torch.tensor([-1.0, 2.0], dtype=torch.float64)
        return CriticalPoint(theta, 1.0, grad_norm, "saddle", 1, values, 0, True, 100.0)

    spec = SearchSpec()
    floor = rounding_floor(point(torch.float32, 0).theta, 100.0)
    message = _short_of_critical(point(torch.float32, 10 * floor), spec)
    assert "rounding floor of torch.float32" in message and "float64" in message
    message = _short_of_critical(
        point(torch.float64, 10 * critical_tolerance(point(torch.float64, 0), spec)), spec
    )
    assert "raise grad_tol (1e-09)" in message
