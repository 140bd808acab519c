"""One flat parameter vector for an `nn.Module`, so curvature code sees a function of a tensor."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class FlatLayout:
    """Names and shapes of a module's parameters, in `named_parameters()` order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, module: nn.Module) -> FlatLayout:
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(p.shape for _, p in named))

    @property
    def numel(self) -> int:
        return sum(s.numel() for s in self.shapes)

    def flatten(self, module: nn.Module) -> Tensor:
        """The module's current parameters as one detached flat vector."""
        params = dict(module.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()

    def load(self, module: nn.Module, theta: Tensor) -> nn.Module:
        """Copy `theta` into `module`'s parameters in place, and return the module."""
        with torch.no_grad():
            for name, value in self.unflatten(theta).items():
                module.get_parameter(name).copy_(value)
        return module

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of `theta` shaped like the module's parameters (differentiable)."""
        if theta.shape != (self.numel,):
            raise ValueError(f"theta must have shape ({self.numel},), got {tuple(theta.shape)}")
        chunks = torch.split(theta, [s.numel() for s in self.shapes])
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put `module` in eval mode for the block and restore its previous mode after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def module_loss(
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[Batch],
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """The loss of `module` on fixed `batches` as a function of one flat parameter vector.

    The batches are averaged weighted by size (so a mean-reduced `loss_fn` gives the mean over
    all examples) and the module runs in eval mode, so the same `theta` always gives the same
    loss: curvature computed from it is reproducible.

    Returns:
        `(loss, theta0)`: the function of a flat vector and the module's current parameters.

    Raises:
        ValueError: if `batches` is empty.
    """
    if not batches:
        raise ValueError("batches must hold at least one (inputs, targets) pair")
    layout = FlatLayout.of(module)
    total = sum(len(targets) for _, targets in batches)
    weights = [len(targets) / total for _, targets in batches]

    def loss(theta: Tensor) -> Tensor:
        params = layout.unflatten(theta)
        with eval_mode(module):
            terms = [
                w * loss_fn(functional_call(module, params, (inputs,)), targets)
                for w, (inputs, targets) in zip(weights, batches, strict=True)
            ]
        return torch.stack(terms).sum()

    return loss, layout.flatten(module)
