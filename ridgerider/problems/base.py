"""A Problem: a differentiable scalar loss over one flat parameter vector, and where to start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Problem:
    """What the search needs of a model.

    Attributes:
        name: a short label for reports.
        loss: a function of a flat 1-D tensor of size `dim` returning a scalar tensor.
        dim: the number of parameters.
        start: the default starting point (a saddle or maximum), or None.
        zero_modes: the number of exactly flat directions the problem declares at every point
            (continuous symmetries, e.g. the softmax shift of an output bias); zero eigenvalues
            beyond these make a critical point degenerate.
        align: `align(reference, theta)` maps `theta` onto its symmetric copy closest to
            `reference` (e.g. permuted hidden units), so copies of one minimum are merged.
    """

    name: str
    loss: Callable[[Tensor], Tensor]
    dim: int
    start: Tensor | None = None
    zero_modes: int = 0
    align: Callable[[Tensor, Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.start is not None and self.start.shape != (self.dim,):
            raise ValueError(f"start must have shape ({self.dim},), got {tuple(self.start.shape)}")

    @property
    def dtype(self) -> torch.dtype:
        return self.start.dtype if self.start is not None else torch.float64
