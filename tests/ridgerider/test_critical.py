"""Settling: onto the saddle beneath a ride's end, a network's practical minimum, and the step
off a saddle its descent stopped on."""

from __future__ import annotations

import math

import pytest
import torch

from ridgerider.critical import (
    SettleConfig,
    classify,
    escape_to_minimum,
    hessian_norm,
    lower_along_flat,
    settle,
    settle_to_minimum,
)
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.linalg.blocks import WHOLE_SPACE_SIZE
from ridgerider.problems.classic import himmelblau, styblinski_tang
from tests.known_answers import HIMMELBLAU_SADDLES


def double_well(theta: torch.Tensor) -> torch.Tensor:
    """x^2 - y^2 + y^4: a saddle at the origin, minima at (0, +-1/sqrt(2)), loss -1/4."""
    x, y = theta[0], theta[1]
    return x**2 - y**2 + y**4


def test_a_descent_stuck_on_a_saddle_is_stepped_off_it_to_a_minimum():
    saddle = torch.zeros(2, dtype=torch.float64)
    stuck, _ = settle_to_minimum(double_well, saddle)  # no gradient: L-BFGS cannot move
    assert torch.equal(stuck, saddle)
    assert classify(double_well, stuck).kind == "saddle"
    escaped, hvps = escape_to_minimum(double_well, stuck)
    assert hvps > 0
    assert abs(escaped[0].item()) < 1e-6 and abs(abs(escaped[1].item()) - 1 / math.sqrt(2)) < 1e-6
    assert classify(double_well, escaped).kind == "minimum"


def test_a_minimum_has_nothing_to_escape():
    minimum = torch.tensor([0.0, 1 / math.sqrt(2)], dtype=torch.float64)
    assert torch.equal(escape_to_minimum(double_well, minimum)[0], minimum)


def test_a_monkey_saddle_falls_along_a_flat_direction_and_a_ring_of_minima_does_not():
    """x^3 - 3xy^2: a zero Hessian at the origin, and the loss falls at third order (along -x);
    (|x|^2 - 1)^2 on its ring of minima: flat along the ring, and rising off every line."""

    def monkey(t: torch.Tensor) -> torch.Tensor:
        return t[0] ** 3 - 3 * t[0] * t[1] ** 2

    def ring(t: torch.Tensor) -> torch.Tensor:
        return (t.square().sum() - 1) ** 2

    origin = torch.zeros(2, dtype=torch.float64)
    lower, hvps = lower_along_flat(monkey, origin, 1e-6)
    assert lower is not None and monkey(lower).item() < -1e-6 and hvps > 0
    on_ring = torch.tensor([0.6, 0.8], dtype=torch.float64)
    assert lower_along_flat(ring, on_ring, 1e-6)[0] is None


def test_a_practical_minimum_stops_at_a_tolerance_relative_to_the_loss():
    """Without the Newton polish, L-BFGS stops once no gradient entry exceeds minimum_tol
    times max(1, |loss|) at its start."""

    def scaled(theta: torch.Tensor) -> torch.Tensor:
        return 1e3 * (double_well(theta) + (theta[0] - 0.3) ** 4)

    start = torch.tensor([1.0, 0.9], dtype=torch.float64)
    config = SettleConfig(minimum_tol=1e-6, polish=False)
    theta, hvps = settle_to_minimum(scaled, start, config)
    gradient = torch.func.grad(scaled)(theta).abs().max().item()
    assert hvps == 0
    assert gradient <= 1e-6 * abs(scaled(start).item())
    polished, products = settle_to_minimum(scaled, start, SettleConfig())
    assert products >= 0 and torch.func.grad(scaled)(polished).norm() <= 1e-9


def deep_linear(x: torch.Tensor, y: torch.Tensor, hidden: int):
    """0.5 mean ||y - x W1^T W2^T||^2 over flat (W1, W2): every local minimum is global, the
    rank-`hidden` regression of y on x (Baldi and Hornik, 1989)."""
    inputs, outputs = x.shape[1], y.shape[1]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w1 = theta[: hidden * inputs].reshape(hidden, inputs)
        w2 = theta[hidden * inputs :].reshape(outputs, hidden)
        return 0.5 * (y - x @ w1.T @ w2.T).square().sum(1).mean()

    fitted = x @ torch.linalg.lstsq(x, y).solution
    u, s, v = torch.linalg.svd(fitted, full_matrices=False)
    best = (u[:, :hidden] * s[:hidden]) @ v[:hidden]
    return loss, 0.5 * (y - best).square().sum(1).mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_float32_practical_minimum_goes_on_past_where_l_bfgs_stalls(seed: int):
    """A float32 loss of about 4 rounds at 5e-7, so L-BFGS's line search stalls with a gradient
    norm of 1e-3 to 2e-3, above the float32 rounding floor of a critical point there (2.4e-4,
    `rounding_floor`), and the search called the ride failed: Newton steps, which need only
    gradients, finish the descent onto the minimum."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 12, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(12, 12, generator=generator, dtype=torch.float64)
    loss, least = deep_linear(x.float(), y.float(), 6)
    start = 0.3 * torch.randn(144, generator=generator).float()
    theta, hvps = settle_to_minimum(loss, start, SettleConfig(minimum_tol=1e-7, polish=False))
    assert hvps > 0
    assert loss(theta).item() == pytest.approx(least, rel=1e-5)
    assert torch.func.grad(loss)(theta).norm().item() <= 1e-4


def test_settling_lands_on_the_saddle_beneath_exactly_and_through_hvps_alike():
    """Near each of Himmelblau's saddles (KNOWN-ANSWERS.md), 0.3 off it along each axis: the
    exact settle of a small problem (Newton within the positive-curvature eigenspace of the
    whole Hessian) and the HVP one of a large problem (Himmelblau beside 200 coordinates of
    curvature 1) both land on that saddle, the exact one for a few Hessians."""
    padding = 200

    def padded(theta: torch.Tensor) -> torch.Tensor:
        return himmelblau().loss(theta[:2]) + theta[2:].square().sum() / 2

    for saddle in HIMMELBLAU_SADDLES:
        for offset in 0.3 * torch.eye(2, dtype=torch.float64):
            small, hvps = settle(himmelblau().loss, saddle + offset)
            large, _ = settle(padded, torch.cat([saddle + offset, torch.full((padding,), 0.1)]))
            assert (small - saddle).norm() < 1e-5 and (large[:2] - saddle).norm() < 1e-5
            assert large[2:].abs().max() < 1e-9 and hvps <= 2 * SettleConfig.newton_steps


def test_the_hessian_norm_beside_the_smallest_pairs_is_the_largest_curvature():
    """A quadratic whose Hessian is diag(-3, -1, 1, 2, ..., 7): ||H|| = 7, exact from a small
    problem's whole-space solve, to the top solve's tolerance above WHOLE_SPACE_SIZE, and with
    no products more where the smallest pairs hold the whole spectrum."""
    for n in (50, 200):
        curvatures = torch.cat([torch.tensor([-3.0, -1.0]), torch.linspace(1.0, 7.0, n - 2)]).to(
            torch.float64
        )

        def quadratic(theta: torch.Tensor, curvatures=curvatures) -> torch.Tensor:
            return 0.5 * (curvatures * theta.square()).sum()

        op = HessianOperator(quadratic, torch.zeros(n, dtype=torch.float64))
        low = eigsh(op, 4, "SA", tol=1e-10, seed=0)
        norm, hvps = hessian_norm(op, low, n, 1e-6)
        assert abs(norm - 7.0) <= 1e-5 * 7.0
        assert (hvps == 0) == (n <= WHOLE_SPACE_SIZE)
    whole = eigsh(op, n, "SA", tol=1e-10, seed=0)
    assert hessian_norm(op, whole, n, 1e-6) == (whole.eigenvalues.abs().max().item(), 0)


def test_a_small_problem_s_maximum_is_classified_from_its_whole_spectrum():
    """Styblinski-Tang's start is a maximum of index dim (every eigenvalue -15.85...): past the
    8 eigenvalues a large problem's classification probes, it used to read "saddle" with a lower
    bound on the index; a problem of at most WHOLE_SPACE_SIZE parameters has its whole spectrum."""
    for dim in (9, 40, WHOLE_SPACE_SIZE):
        problem = styblinski_tang(dim)
        point = classify(problem.loss, problem.start)
        assert point.kind == "maximum" and point.index == dim and point.index_is_exact
    large = styblinski_tang(WHOLE_SPACE_SIZE + 1)  # probed: its index a lower bound
    probed = classify(large.loss, large.start)
    assert probed.index == 8 and not probed.index_is_exact
