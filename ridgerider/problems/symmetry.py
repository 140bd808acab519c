"""Hidden-unit symmetries of an MLP: permutations, sign flips, softmax shift, a dead unit's bias.

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

DEAD_WEIGHT = 1e-5
"""The least relative cutoff below which a hidden unit's weights are dead: its output then moves
by 1e-5 of 1 + ||theta|| or less whatever its bias, a hundredth of the archive's default merge
distance, and a descent under weak decay leaves such weights well inside it."""


def _layers(theta: Tensor, widths: Sequence[int]) -> tuple[list[Tensor], list[Tensor]]:
    """The weight matrices (out x in) and biases of a flat `[W1, b1, W2, b2, ...]` vector."""
    shapes = list(itertools.pairwise(widths))
    pieces = torch.split(theta, [size for i, o in shapes for size in (o * i, o)])
    weights = [w.view(o, i) for w, (i, o) in zip(pieces[::2], shapes, strict=True)]
    return weights, list(pieces[1::2])


def _rows(
    weights: list[Tensor], biases: list[Tensor], layer: int, *, outgoing: bool, dead: Tensor
) -> Tensor:
    """Hidden layer `layer`'s units as rows: [incoming weights, bias(, outgoing weights)], the
    bias of each `dead` unit left out (zero)."""
    parts = [weights[layer], torch.where(dead, 0.0, biases[layer])[:, None]]
    return torch.cat([*parts, weights[layer + 1].T] if outgoing else parts, 1)


def _dead(weights: list[Tensor], layer: int, tol: float | None) -> Tensor:
    """Which units of hidden layer `layer` have every incoming and outgoing weight within
    `tol` of zero (none where `tol` is None)."""
    if tol is None:
        return torch.zeros(weights[layer].shape[0], dtype=torch.bool, device=weights[layer].device)
    incoming = weights[layer].abs().amax(1)
    outgoing = weights[layer + 1].abs().amax(0)
    return torch.maximum(incoming, outgoing) <= tol


def dead_tolerance(reference: Tensor, theta: Tensor) -> float:
    """A hidden unit whose incoming and outgoing weights are all at most this is dead: its bias
    changes no output by more than the merge's own tolerance allows. `DEAD_WEIGHT` or, where
    larger, the square root of the dtype's epsilon, times 1 + ||theta|| (1e-5 of that in
    float64, 3.5e-4 in float32); a ride's first step moves weights by 1e-3 and more. A dead
    unit's weights at a minimum under weight decay lie where the descent stopped: 1e-12 and
    less in float64 on `tiny_net`, up to 1e-6 in float32, 2e-7 in float64 under weak decay
    (a 5-4-1 regressor, decay 1e-3)."""
    scale = 1 + max(reference.norm().item(), theta.norm().item())
    return max(DEAD_WEIGHT, torch.finfo(theta.dtype).eps ** 0.5) * scale


def align(
    reference: Tensor,
    theta: Tensor,
    *,
    inputs: int,
    hidden: int | Sequence[int],
    outputs: int,
    odd_activation: bool,
    shift_output_bias: bool = True,
    dead_unit_bias: bool = False,
) -> Tensor:
    """`theta` with its hidden units permuted (and, for an odd activation such as tanh, sign
    flipped) to match `reference` as closely as possible, its output bias shifted to the
    same mean where `shift_output_bias` (softmax over several logits ignores a constant shift;
    one logit's sigmoid and a regressor's outputs do not), and, where `dead_unit_bias`, each
    dead unit's bias (`dead_tolerance`) set to that of the dead unit it is matched with: a unit
    switched off computes nothing whatever its bias, and where biases are not decayed the loss
    is flat along it, so every point of that family is one solution.

    The layers are matched in order, each by an optimal assignment of its units' rows
    [incoming weights, bias], plus outgoing weights for the last hidden layer (the outputs are
    never permuted), a dead unit's bias left out where `dead_unit_bias`; each layer's
    permutation and signs are carried into the next layer's incoming columns before it is
    matched, so an exact copy is recovered exactly.

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
    tol = dead_tolerance(reference, theta) if dead_unit_bias else None
    for layer in range(len(widths) - 2):
        ref_dead = _dead(ref_weights, layer, tol)
        dead = _dead(weights, layer, tol)
        ref_rows = _rows(ref_weights, ref_biases, layer, outgoing=layer == last, dead=ref_dead)
        rows = _rows(weights, biases, layer, outgoing=layer == last, dead=dead)
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
        both = dead[order] & ref_dead
        biases[layer] = torch.where(both, ref_biases[layer], biases[layer])
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
    loss), and a dead unit's bias taken as any other where the loss does not change with it
    (checked the same way: biases not decayed). None for any other module: copies are then
    merged by distance alone."""
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
        dead_unit_bias=_dead_bias_invariant(loss, theta, layout.widths),
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
    point = _beside(theta)
    shift = torch.zeros_like(point)
    shift[-outputs:] = 0.7
    return _same_loss(loss, point, point + shift)


def _dead_bias_invariant(
    loss: Callable[[Tensor], Tensor], theta: Tensor, widths: Sequence[int]
) -> bool:
    """Whether `loss` keeps its value, to rounding, when the bias of a dead hidden unit moves:
    the first unit of every hidden layer switched off (its weights zeroed) at a seeded random
    point beside `theta`."""
    point = _beside(theta)
    weights = _layers(point, widths)[0]
    for layer in range(len(widths) - 2):
        weights[layer][0] = 0.0
        weights[layer + 1][:, 0] = 0.0
    moved = point.clone()
    for bias in _layers(moved, widths)[1][:-1]:
        bias[0] += 0.7
    return _same_loss(loss, point, moved)


def _beside(theta: Tensor) -> Tensor:
    """A seeded random point 0.1 (a coordinate's deviation) beside `theta`."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
    return theta + 0.1 * noise


def _same_loss(loss: Callable[[Tensor], Tensor], point: Tensor, other: Tensor) -> bool:
    """Whether `loss` is the same at both points to rounding."""
    with torch.no_grad():
        value, shifted = loss(point).item(), loss(other).item()
    return abs(shifted - value) <= 64 * torch.finfo(point.dtype).eps * max(1.0, abs(value))
