"""Hidden-unit symmetries of a one-hidden-layer MLP: permutations, sign flips, softmax shift.

Two parameter vectors related by these transformations compute the same function, so the
search must see them as one minimum. `align` maps one onto the other as closely as it can.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def _units(theta: Tensor, inputs: int, hidden: int, outputs: int) -> tuple[Tensor, Tensor]:
    """Per-hidden-unit rows [incoming weights, bias, outgoing weights], and the output bias."""
    w1, b1, w2, b2 = torch.split(theta, [hidden * inputs, hidden, outputs * hidden, outputs])
    rows = torch.cat([w1.view(hidden, inputs), b1[:, None], w2.view(outputs, hidden).T], 1)
    return rows, b2


def _flat(rows: Tensor, b2: Tensor, inputs: int) -> Tensor:
    return torch.cat(
        [rows[:, :inputs].reshape(-1), rows[:, inputs], rows[:, inputs + 1 :].T.reshape(-1), b2]
    )


def align(
    reference: Tensor,
    theta: Tensor,
    *,
    inputs: int,
    hidden: int,
    outputs: int,
    odd_activation: bool,
) -> Tensor:
    """`theta` with its hidden units permuted (and, for an odd activation such as tanh, sign
    flipped) to match `reference` as closely as possible, and its output bias shifted to the
    same mean (softmax ignores a constant shift). The matching is an optimal assignment."""
    ref_rows, ref_b2 = _units(reference, inputs, hidden, outputs)
    rows, b2 = _units(theta, inputs, hidden, outputs)
    cost = torch.cdist(ref_rows, rows)
    signs = torch.ones(hidden, hidden, dtype=theta.dtype)
    if odd_activation:
        flipped = torch.cdist(ref_rows, -rows)
        signs = torch.where(flipped < cost, -1.0, 1.0).to(theta.dtype)
        cost = torch.minimum(cost, flipped)
    rows_index, cols_index = linear_sum_assignment(cost.cpu().numpy())
    order = torch.as_tensor(cols_index)
    matched = rows[order] * signs[torch.as_tensor(rows_index), order][:, None]
    shifted = b2 - b2.mean() + ref_b2.mean()
    return _flat(matched, shifted, inputs)
