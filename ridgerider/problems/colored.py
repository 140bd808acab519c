"""`colored-digits`: digits with a spurious colour channel, for out-of-distribution behaviour.

Ten colour inputs are appended to the 64 pixels, one of them on. In the training environment
(and the in-distribution test split) the colour agrees with the label with probability
`agreement`; in the out-of-distribution split it is drawn independently of the label. A model
that reads the colour does well in distribution and badly out of it; one that reads the shape
does well in both: the case where choosing among diverse minima matters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ridgerider.problems.base import Problem
from ridgerider.problems.digits import (
    CLASSES,
    MLP_PARAMETERS,
    DigitsSplit,
    digits_split,
    mlp_problem,
    torch_device,
)
from ridgerider.problems.parameters import declare, number


def _coloured(
    pixels: Tensor, labels: Tensor, agreement: float, strength: float, generator: torch.Generator
) -> Tensor:
    random_colour = torch.randint(0, CLASSES, labels.shape, generator=generator)
    keep = torch.rand(labels.shape, generator=generator, dtype=torch.float64) < agreement
    colour = torch.where(keep, labels, random_colour)
    channel = strength * torch.nn.functional.one_hot(colour, CLASSES).to(pixels.dtype)
    return torch.cat([pixels, channel], 1)


def colored_split(
    seed: int = 0, agreement: float = 0.9, strength: float = 1.0
) -> tuple[DigitsSplit, tuple[Tensor, Tensor]]:
    """The coloured train/test splits and the out-of-distribution split (colour independent)."""
    base = digits_split(seed)
    generator = torch.Generator().manual_seed(seed)
    data = DigitsSplit(
        _coloured(base.x_train, base.y_train, agreement, strength, generator),
        base.y_train,
        _coloured(base.x_test, base.y_test, agreement, strength, generator),
        base.y_test,
    )
    ood = _coloured(base.x_test, base.y_test, 1.0 / CLASSES, strength, generator)
    return data, (ood, base.y_test)


@declare(
    *MLP_PARAMETERS,
    number("agreement", 1.0 / CLASSES, 1.0, "how often the colour equals the label in training"),
    number("strength", 0.0, 10.0, "the value of the lit colour input", open_low=True),
)
def colored_digits_problem(
    hidden: int = 8,
    activation: str = "tanh",
    weight_decay: float = 0.5e-3,
    seed: int = 0,
    agreement: float = 0.9,
    strength: float = 1.0,
    start: str | None = None,
    layers: int = 1,
    device: str = "cpu",
) -> Problem:
    """The `colored-digits` problem: an MLP with 74 inputs; see the module doc.

    Args:
        agreement: how often the colour equals the label in training, in [0.1, 1].
        strength: the value of the lit colour input (pixels are in [0, 1]).
        The others as in `digits_mlp_problem`.
    """
    data, (ood_inputs, ood_labels) = colored_split(seed, agreement, strength)
    where = torch_device(device)
    data, ood = data.to(where), (ood_inputs.to(where), ood_labels.to(where))
    return mlp_problem(
        "colored-digits", data, hidden, activation, weight_decay, start, ood=ood, layers=layers
    )
