"""Hidden-unit symmetries of an MLP: permutations, sign flips, softmax shift.

Two parameter vectors related by these transformations compute the same function, so the
search must see them as one minimum. `align` maps one onto the other as closely as it can.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ridgerider.flat import eval_mode
from ridgerider.problems.invariant import invariant_layout


def _layers(theta: Tensor, widths: Sequence[int]) -> tuple[list[Tensor], list[Tensor]]:
    """The weight matrices (out x in) and biases of a flat `[W1, b1, W2, b2, ...]` vector."""
    shapes = list(itertools.pairwise(widths))
    pieces = torch.split(theta, [size for i, o in shapes for size in (o * i, o)])
    weights = [w.view(o, i) for w, (i, o) in zip(pieces[::2], shapes, strict=True)]
    return weights, list(pieces[1::2])


def _rows(weights: list[Tensor], biases: list[Tensor], layer: int, *, outgoing: bool) -> Tensor:
    """Hidden layer `layer`'s units as rows: [incoming weights, bias(, outgoing weights)]."""
    parts = [weights[layer], biases[layer][:, None]]
    return torch.cat([*parts, weights[layer + 1].T] if outgoing else parts, 1)


def align(
    reference: Tensor,
    theta: Tensor,
    *,
    inputs: int,
    hidden: int | Sequence[int],
    outputs: int,
    odd_activation: bool,
    shift_output_bias: bool = True,
) -> Tensor:
    """`theta` with its hidden units permuted (and, for an odd activation such as tanh, sign
    flipped) to match `reference` as closely as possible, and its output bias shifted to the
    same mean where `shift_output_bias` (softmax over several logits ignores a constant shift;
    one logit's sigmoid and a regressor's outputs do not).

    The layers are matched in order, each by an optimal assignment of its units' rows
    [incoming weights, bias], plus outgoing weights for the last hidden layer (the outputs are
    never permuted); each layer's permutation and signs are carried into the next layer's
    incoming columns before it is matched, so an exact copy is recovered exactly.

    Args:
        reference, theta: flat `[W1, b1, ..., W_out, b_out]` vectors (`nn.Sequential` order).
        inputs, outputs: the network's input and output widths.
        hidden: the width of each hidden layer (an int for one hidden layer).
        odd_activation: whether flipping a unit's signs is a symmetry too.
        shift_output_bias: whether shifting the output bias is a symmetry too.
    """
    widths = [inputs, *([hidden] if isinstance(hidden, int) else hidden), outputs]
    ref_weights, ref_biases = _layers(reference, widths)
    weights, biases = _layers(theta, widths)
    last = len(widths) - 3
    for layer in range(len(widths) - 2):
        ref_rows = _rows(ref_weights, ref_biases, layer, outgoing=layer == last)
        rows = _rows(weights, biases, layer, outgoing=layer == last)
        cost = torch.cdist(ref_rows, rows)
        signs = torch.ones_like(cost)
        if odd_activation:
            flipped = torch.cdist(ref_rows, -rows)
            signs = torch.where(flipped < cost, -1.0, 1.0).to(theta.dtype)
            cost = torch.minimum(cost, flipped)
        rows_index, cols_index = linear_sum_assignment(cost.cpu().numpy())
        order = torch.as_tensor(cols_index, device=theta.device)
        sign = signs[torch.as_tensor(rows_index, device=theta.device), order]
        weights[layer] = weights[layer][order] * sign[:, None]
        biases[layer] = biases[layer][order] * sign
        weights[layer + 1] = weights[layer + 1][:, order] * sign
    if shift_output_bias:
        biases[-1] = biases[-1] - biases[-1].mean() + ref_biases[-1].mean()
    return torch.cat([t.reshape(-1) for pair in zip(weights, biases, strict=True) for t in pair])


def module_align(
    module: nn.Module, loss: Callable[[Tensor], Tensor], theta: Tensor
) -> Callable[[Tensor, Tensor], Tensor] | None:
    """`align` for `module` where it is an MLP of biased Linear layers and elementwise
    activations (`invariant.invariant_layout`): its hidden units permuted, sign flipped where
    every activation between Linear layers is odd (checked on a random batch, as tanh is), and
    its output bias shifted where `loss` (of the flat parameters) does not change when it is
    (checked near `theta`: softmax cross-entropy without decay on biases; not a regressor's
    loss). None for any other module: copies are then merged by distance alone."""
    try:
        layout = invariant_layout(module)
    except ValueError:
        return None
    if not all(layout.biased):
        return None
    children = list(module.children())
    linear = [i for i, child in enumerate(children) if isinstance(child, nn.Linear)]
    between = [
        child
        for i, child in enumerate(children)
        if linear[0] < i < linear[-1] and not isinstance(child, nn.Linear)
    ]
    like = next(module.parameters())
    return partial(
        align,
        inputs=layout.widths[0],
        hidden=layout.hidden,
        outputs=layout.widths[-1],
        odd_activation=all(_is_odd(child, like) for child in between),
        shift_output_bias=_shift_invariant(loss, theta, layout.widths[-1]),
    )


def _is_odd(activation: nn.Module, like: Tensor) -> bool:
    """Whether `activation`(-x) = -`activation`(x) on a random batch (tanh; not ReLU)."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(3, 5, generator=generator, dtype=torch.float64).to(like)
    with eval_mode(activation), torch.no_grad():
        return torch.allclose(activation(-batch), -activation(batch))


def _shift_invariant(loss: Callable[[Tensor], Tensor], theta: Tensor, outputs: int) -> bool:
    """Whether `loss` keeps its value, to rounding, when the last `outputs` parameters (the
    output bias) all move by one constant, near `theta` (at a seeded random point beside it)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
    point = theta + 0.1 * noise
    shift = torch.zeros_like(point)
    shift[-outputs:] = 0.7
    with torch.no_grad():
        value, shifted = loss(point).item(), loss(point + shift).item()
    return abs(shifted - value) <= 64 * torch.finfo(theta.dtype).eps * max(1.0, abs(value))
