"""Losses that carry their own exact derivatives.

A problem whose loss has a cheap closed-form gradient and Hessian (a tabular policy, a separable
test function) may hand the engine a loss object with two methods besides `__call__`. Where the
engine needs a small problem's whole Hessian (`gradient_and_hessian`) or a descent's gradients
(`lbfgs`), it then calls them instead of autograd, whose per-operation overhead is most of a
small problem's cost (the tree MDP's Hessian: 7 to 9 times cheaper at 15 to 127 parameters,
`python bench/exact_derivatives.py`). Everything else (Hessian-vector products, torch.func
transforms) still differentiates `__call__`, so the three must agree to rounding; a problem's
tests check that they do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor
from torch.func import grad


class ExactDerivatives(Protocol):
    """A loss of one flat parameter vector with its exact first and second derivatives."""

    def __call__(self, theta: Tensor) -> Tensor: ...

    def value_and_gradient(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and its gradient at `theta` (shape (..., n): a batch of points is allowed)."""
        ...

    def gradient_and_hessian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """The gradient and the whole, symmetric Hessian at one point `theta` (shape (n,))."""
        ...


def exact_derivatives(loss: Callable[[Tensor], Tensor]) -> ExactDerivatives | None:
    """`loss` itself where it carries exact derivatives, else None (an attribute check: this
    runs once per Hessian, where a runtime protocol check would cost more than the Hessian)."""
    if callable(getattr(loss, "value_and_gradient", None)) and callable(
        getattr(loss, "gradient_and_hessian", None)
    ):
        return loss  # type: ignore[return-value]
    return None


def loss_gradient(loss: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """The gradient of `loss` at `theta`: the loss's exact one where it carries it, else
    torch.func's."""
    exact = exact_derivatives(loss)
    if exact is not None:
        return exact.value_and_gradient(theta)[1]
    return grad(loss)(theta)
