"""Classic test functions with known critical points (see KNOWN-ANSWERS.md)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ridgerider.problems.base import Problem
from ridgerider.problems.parameters import declare, integer

MAX_DIM = 1024


class _Himmelblau:
    """(x^2 + y - 11)^2 + (x + y^2 - 7)^2 with its exact derivatives (`linalg.exact`)."""

    def __call__(self, theta: Tensor) -> Tensor:
        x, y = theta[0], theta[1]
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    def value_and_gradient(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        x, y = theta[..., 0], theta[..., 1]
        a, b = x**2 + y - 11, x + y**2 - 7
        return a**2 + b**2, _himmelblau_gradient(x, y, a, b)

    def gradient_and_hessian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        x, y = theta[0], theta[1]
        a, b = x**2 + y - 11, x + y**2 - 7
        mixed = 4 * (x + y)
        hessian = torch.stack(
            [torch.stack([4 * a + 8 * x**2 + 2, mixed]), torch.stack([mixed, 2 + 4 * b + 8 * y**2])]
        )
        return _himmelblau_gradient(x, y, a, b), hessian


def _himmelblau_gradient(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Himmelblau's gradient from its two squared terms a = x^2 + y - 11, b = x + y^2 - 7."""
    return torch.stack([4 * x * a + 2 * b, 2 * a + 4 * y * b], -1)


@declare()
def himmelblau() -> Problem:
    """Four minima at f = 0; starts at its one local maximum (-0.270845, -0.923039)."""
    start = torch.tensor([-0.27084459, -0.92303856], dtype=torch.float64)
    return Problem("himmelblau", _Himmelblau(), 2, start)


class _StyblinskiTang:
    """0.5 * sum(x^4 - 16 x^2 + 5 x) with its exact derivatives (`linalg.exact`): separable, so
    the Hessian is diagonal."""

    def __call__(self, theta: Tensor) -> Tensor:
        return 0.5 * (theta**4 - 16 * theta**2 + 5 * theta).sum()

    def value_and_gradient(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        value = 0.5 * (theta**4 - 16 * theta**2 + 5 * theta).sum(-1)
        return value, 2 * theta**3 - 16 * theta + 2.5

    def gradient_and_hessian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return 2 * theta**3 - 16 * theta + 2.5, torch.diag(6 * theta**2 - 16)


STYBLINSKI_TANG_MAXIMUM = float(
    next(r.real for r in np.roots([2.0, 0.0, -16.0, 2.5]) if abs(r.real) < 1 and r.imag == 0)
)


@declare(integer("dim", 1, MAX_DIM, "coordinates (2**dim minima)"))
def styblinski_tang(dim: int = 2) -> Problem:
    """2^dim minima; starts where every coordinate is at its local maximum (x = 0.156731),
    where the Hessian is a multiple of the identity (one fully repeated eigenvalue)."""
    start = torch.full((dim,), STYBLINSKI_TANG_MAXIMUM, dtype=torch.float64)
    return Problem(f"styblinski-tang-{dim}d", _StyblinskiTang(), dim, start)


def _six_hump_camel(theta: Tensor) -> Tensor:
    x, y = theta[0], theta[1]
    return (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2


def _from_origin(name: str, loss: Callable[[Tensor], Tensor]) -> Problem:
    """A function of (x, y) that starts at the origin."""
    return Problem(name, loss, 2, torch.zeros(2, dtype=torch.float64))


@declare()
def six_hump_camel() -> Problem:
    """Six minima, seven saddles, two maxima; starts at the saddle at the origin."""
    return _from_origin("six-hump-camel", _six_hump_camel)


@declare()
def monkey_saddle() -> Problem:
    """x^3 - 3 x y^2: at the origin gradient and Hessian vanish (a higher-order point)."""
    return _from_origin("monkey-saddle", lambda t: t[0] ** 3 - 3 * t[0] * t[1] ** 2)


@declare()
def cubic_valley() -> Problem:
    """x^2 + y^3: the Hessian at the origin is diag(2, 0), yet the origin is no minimum."""
    return _from_origin("cubic-valley", lambda t: t[0] ** 2 + t[1] ** 3)
