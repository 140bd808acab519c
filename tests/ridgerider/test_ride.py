"""Riding one ridge: adaptive steps, continuity, the cost of a step, and why a ride ends."""

from __future__ import annotations

import math
import statistics

import torch

from ridgerider.critical import settle
from ridgerider.problems.classic import himmelblau
from ridgerider.problems.registry import load
from ridgerider.ride import MIN_OVERLAP, RideConfig, ride
from ridgerider.search.ridges import equal_groups, spectrum_at

HIMMELBLAU_MAXIMUM = torch.tensor([-0.270845, -0.923039], dtype=torch.float64)


def test_a_fixed_step_stops_at_the_first_rise_an_adaptive_one_rides_on():
    """From Himmelblau's maximum along its second eigenvector, - sign: a fixed step of 2
    overshoots the ridge at once and the ride ends where it began; halving and retaking rides
    on to where the curvature turns, the loss lower."""
    problem = himmelblau()
    start = spectrum_at(problem, HIMMELBLAU_MAXIMUM, 2)
    direction = -start.vectors[:, 1]
    fixed = ride(problem.loss, HIMMELBLAU_MAXIMUM, direction, RideConfig(2.0, adaptive=False))
    adaptive = ride(problem.loss, HIMMELBLAU_MAXIMUM, direction, RideConfig(2.0))
    assert fixed.reason == "loss-rose" and fixed.steps == 0
    assert torch.equal(fixed.theta, HIMMELBLAU_MAXIMUM)
    assert adaptive.reason == "curvature-nonnegative" and adaptive.steps >= 1
    assert problem.loss(adaptive.theta) < problem.loss(HIMMELBLAU_MAXIMUM) - 3
    assert min(adaptive.overlaps) >= MIN_OVERLAP


def test_ride_steps_on_a_network_cost_a_few_products_and_the_ridge_turns_smoothly():
    """digits-mlp from its zero point along each group's canonical ridge (the search's own
    rides): a median of at most 5 HVPs a step, each accepted step's ridge overlapping the
    previous one by at least MIN_OVERLAP."""
    problem = load("digits-mlp")
    spectrum = spectrum_at(problem, problem.start, 17)
    costs = []
    for group in equal_groups(spectrum.values, spectrum.norm_estimate)[:3]:
        index = group[0]
        neighbour = spectrum.vectors[:, [j for j in range(17) if j != index][:1]]
        end = ride(
            problem.loss,
            problem.start,
            spectrum.vectors[:, index],
            RideConfig(),
            neighbour,
            spectrum.norm_estimate,
        )
        assert end.steps > 5 and problem.loss(end.theta) < problem.loss(problem.start)
        assert min(end.overlaps) >= MIN_OVERLAP
        costs += end.step_hvps
    assert statistics.median(costs) <= 5, costs


def test_long_steps_end_a_ride_where_short_ones_do():
    """Himmelblau from its maximum, each sign of each ridge: steps that grow to 64 times
    step_size (a small problem's) take a quarter of the steps or less of step_size, and both ends
    settle onto the same critical point beneath: the same tree. (The ends themselves differ by
    up to 0.11: long chords cut the ridge's corners.)"""
    problem = himmelblau()
    start = spectrum_at(problem, HIMMELBLAU_MAXIMUM, 2)
    short, long = RideConfig(0.02), RideConfig(0.02, max_step=64)
    steps = {"short": 0, "long": 0}
    for vector in start.vectors.T:
        for sign in (1.0, -1.0):
            a = ride(problem.loss, HIMMELBLAU_MAXIMUM, sign * vector, short)
            b = ride(problem.loss, HIMMELBLAU_MAXIMUM, sign * vector, long)
            assert a.reason == b.reason == "curvature-nonnegative"
            beneath = [settle(problem.loss, end.theta)[0] for end in (a, b)]
            assert (beneath[0] - beneath[1]).norm() < 1e-8
            steps["short"] += a.steps
            steps["long"] += b.steps
    assert steps["long"] <= steps["short"] / 4


def crossing(coupling: float):
    """-x^2 + x^3/3 - y^2/2 + coupling x y: along y = 0 the curvature -2 + 2x of x meets that of
    y, -1, at x = 1/2, where the coupling splits them: the eigenvectors there are (1, -+1)/sqrt 2,
    and they turn to the axes within about `coupling` of x = 1/2 on either side."""

    def loss(theta: torch.Tensor) -> torch.Tensor:
        x, y = theta[0], theta[1]
        return -(x**2) + x**3 / 3 - y**2 / 2 + coupling * x * y

    return loss


def test_a_ride_is_not_followed_across_a_ridge_that_turns_within_its_shortest_step():
    """From where two eigenvalues meet, along the lower one's eigenvector: with a coupling of
    1e-5 the ridge turns by 45 degrees within far less than the shortest step, so the ride ends
    at once ("ridge-turned") rather than jump to another ridge; with a coupling of 0.05 the ridge
    turns gently, and the ride follows it, each step overlapping the previous by MIN_OVERLAP."""
    meeting = torch.tensor([0.5, 0.0], dtype=torch.float64)
    lower = torch.tensor([1.0, -1.0], dtype=torch.float64) / math.sqrt(2)
    config = RideConfig(0.02, max_steps=200)
    sharp = ride(crossing(1e-5), meeting, lower, config)
    assert sharp.reason == "ridge-turned" and sharp.steps == 0
    assert torch.equal(sharp.theta, meeting)
    gentle = ride(crossing(0.05), meeting, lower, config)
    assert gentle.reason == "step-budget" and min(gentle.overlaps) >= MIN_OVERLAP
    assert crossing(0.05)(gentle.theta) < crossing(0.05)(meeting) - 1
