"""The hidden-unit symmetries of an MLP, applied by hand, for the tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor


def permute_units(
    theta: Tensor,
    widths: Sequence[int],
    orders: Sequence[Tensor],
    signs: Sequence[Tensor] | None = None,
) -> Tensor:
    """`theta` (flat `[W1, b1, ..., W_out, b_out]` of an MLP with these widths) with hidden layer
    l's units reordered by `orders[l]` and multiplied by `signs[l]` (+-1 each)."""
    signs = signs or [torch.ones(width, dtype=theta.dtype) for width in widths[1:-1]]
    sizes = [size for i, o in itertools.pairwise(widths) for size in (o * i, o)]
    pieces = list(torch.split(theta.clone(), sizes))
    weights = [w.view(o, i) for w, i, o in zip(pieces[::2], widths[:-1], widths[1:], strict=True)]
    biases = pieces[1::2]
    for layer, (order, sign) in enumerate(zip(orders, signs, strict=True)):
        weights[layer] = weights[layer][order] * sign[:, None]
        biases[layer] = biases[layer][order] * sign
        weights[layer + 1] = weights[layer + 1][:, order] * sign
    return torch.cat([t.reshape(-1) for pair in zip(weights, biases, strict=True) for t in pair])
