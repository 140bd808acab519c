"""An MLP with 1 to 4 tanh/ReLU/GELU hidden layers on scikit-learn's digits (which ship inside
scikit-learn: no download), and the MLP problem builder that the other image problems share
(`mlp_problem`: any inputs, 10 classes or one binary logit).

Layout of the flat vector: `nn.Sequential(Linear(64, H), act, [Linear(H, H), act] * (layers - 1),
Linear(H, 10))` parameters in `named_parameters()` order (W1, b1, ..., W_out, b_out). The loss
is the mean cross-entropy on the training split plus `weight_decay` times the squared norm of
every weight matrix (biases are not decayed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ridgerider.flat import FlatLayout
from ridgerider.problems.base import Problem, classification_loss, module_problem
from ridgerider.problems.invariant import InvariantLayout, maximally_invariant_point
from ridgerider.problems.parameters import (
    Parameter,
    ParameterError,
    choice,
    declare,
    integer,
    number,
    seed,
)

# No ReLU: its second derivative is zero, so an MLP's symmetric start is flat along every unit
# split, a degenerate point with no ridge to ride (measured at the zero point and at the
# maximally invariant point, one and two hidden layers: index 0). GELU is the smooth ReLU.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}
INPUTS, CLASSES = 64, 10
MAX_LAYERS = 4
MAX_HIDDEN = 1024
STARTS = ("zero", "saddle", "mis")
DEVICES = ("cpu", "cuda")


def mlp_parameters(activations: tuple[str, ...]) -> tuple[Parameter, ...]:
    """The parameters every MLP problem shares: its widths, activation, weight decay and seed."""
    return (
        integer("hidden", 1, MAX_HIDDEN, "units of each hidden layer"),
        integer("layers", 1, MAX_LAYERS, "hidden layers"),
        choice("activation", activations, "the hidden units' nonlinearity"),
        number("weight_decay", 0.0, 1.0, "the coefficient of the weights' squared norm"),
        seed("the seed of the data's split"),
    )


DEVICE = choice("device", DEVICES, "where the model, the data and the Hessian-vector products live")
MLP_PARAMETERS = (
    *mlp_parameters(tuple(ACTIVATIONS)),
    choice(
        "start",
        STARTS,
        "zero, mis or saddle (= mis); omitted: zero for one hidden layer, mis for more",
        nullable=True,
    ),
    DEVICE,
)


def torch_device(device: str) -> torch.device:
    """The torch device a problem's `device` argument names.

    Raises:
        ParameterError: "cuda" where this torch sees no CUDA device.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            "device must be 'cpu' here: this torch build sees no CUDA device "
            "(torch.cuda.is_available() is False), got 'cuda'"
        )
    return torch.device(device)


@dataclass(frozen=True)
class DigitsSplit:
    """Pixels scaled to [0, 1] and integer labels, split stratified 75/25."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    def to(self, device: torch.device | str) -> DigitsSplit:
        return DigitsSplit(*(t.to(device) for t in astuple(self)))


def digits_split(seed: int = 0, dtype: torch.dtype = torch.float64) -> DigitsSplit:
    """The digits data set, stratified 75/25 train/test split drawn with `seed`."""
    # scikit-learn costs half a second to import: only the problems that use its data pay it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.25, stratify=y, random_state=seed
    )
    return DigitsSplit(
        torch.as_tensor(x_train, dtype=dtype),
        torch.as_tensor(y_train, dtype=torch.long),
        torch.as_tensor(x_test, dtype=dtype),
        torch.as_tensor(y_test, dtype=torch.long),
    )


def digits_mlp(
    hidden: int,
    activation: str = "tanh",
    dtype: torch.dtype = torch.float64,
    inputs: int = INPUTS,
    layers: int = 1,
    outputs: int = CLASSES,
) -> nn.Sequential:
    """An untrained MLP: `layers` hidden layers of `hidden` units each, then `outputs` (10)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
    if not isinstance(layers, int) or not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"layers must be an integer in [1, {MAX_LAYERS}], got {layers!r}")
    modules: list[nn.Module] = [nn.Linear(inputs, hidden), ACTIVATIONS[activation]()]
    for _ in range(layers - 1):
        modules += [nn.Linear(hidden, hidden), ACTIVATIONS[activation]()]
    return nn.Sequential(*modules, nn.Linear(hidden, outputs)).to(dtype)


def digits_loss(
    model: nn.Sequential,
    data: DigitsSplit,
    weight_decay: float = 0.5e-3,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Callable[[Tensor], Tensor]:
    """Training loss of `model` as a function of its flat parameters (see the module doc):
    `loss_fn` (cross-entropy by default) on the train split plus the weight decay."""
    train = (data.x_train, data.y_train)
    return module_problem("digits", model, loss_fn, train, weight_decay=weight_decay).loss


def symmetric_point(unit: Tensor, hidden: int, inputs: int = INPUTS) -> Tensor:
    """The one-hidden-layer flat vector in which every hidden unit is a copy of `unit`: its
    incoming weights, bias, outgoing weights, then the output bias (`InvariantLayout.embed`)."""
    return InvariantLayout((inputs, hidden, CLASSES), (True, True)).embed(unit)


def zero_point(model: nn.Sequential, data: DigitsSplit) -> Tensor:
    """W1 = W2 = b1 = 0 and b2 = log class frequencies (for one binary logit, the log odds of
    class 1): an exact critical point."""
    layout = FlatLayout.of(model)
    outputs = model[-1].out_features
    frequencies = torch.bincount(data.y_train, minlength=max(outputs, 2)).to(torch.float64)
    frequencies /= frequencies.sum()
    theta = torch.zeros(layout.numel, dtype=data.x_train.dtype, device=data.x_train.device)
    if outputs == 1:
        theta[-1] = (frequencies[1] / frequencies[0]).log().to(theta.dtype)
    else:
        theta[-outputs:] = frequencies.log().to(theta.dtype)
    return theta


@declare(*MLP_PARAMETERS)
def digits_mlp_problem(
    hidden: int = 8,
    activation: str = "tanh",
    weight_decay: float = 0.5e-3,
    seed: int = 0,
    start: str | None = None,
    layers: int = 1,
    device: str = "cpu",
) -> Problem:
    """The `digits-mlp` problem: an MLP on digits, starting at a symmetric saddle.

    Args:
        hidden: units of each hidden layer.
        activation: "tanh" (odd: sign flips are symmetries too) or "gelu" (no ReLU: see
            ACTIVATIONS).
        weight_decay: the coefficient of the weights' squared norm in the loss.
        seed: the train/test split's seed.
        start: "zero" (W = hidden biases = 0, output bias = log class frequencies: invariant to
            every permutation and sign flip; one hidden layer only), "mis" (every hidden
            layer's units equal, minimised in that subspace), "saddle" (the same as "mis"), or
            None: "zero" for one hidden layer, "mis" for more.
        layers: hidden layers, 1 to 4.
        device: "cpu" or "cuda": where the loss, its gradients and Hessian-vector products are
            computed (the search's bookkeeping and stored weights stay on the CPU).
    """
    data = digits_split(seed).to(torch_device(device))
    return mlp_problem("digits-mlp", data, hidden, activation, weight_decay, start, layers=layers)


def mlp_problem(
    family: str,
    data: DigitsSplit,
    hidden: int,
    activation: str,
    weight_decay: float,
    start: str | None,
    ood: tuple[Tensor, Tensor] | None = None,
    layers: int = 1,
    *,
    outputs: int = CLASSES,
    splits: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    find_mis: Callable[[nn.Sequential, Callable[[Tensor], Tensor]], Tensor] = (
        maximally_invariant_point
    ),
) -> Problem:
    """An MLP classifier on `data` as a Problem named `{family}-{widths}-{activation}`, e.g.
    "digits-mlp-64-8-8-10-tanh" (see `digits_mlp_problem`), on the device `data` lives on.

    Args:
        outputs: 10 (softmax cross-entropy over the classes; the output bias's shift is a
            zero mode) or 1 (one logit, binary cross-entropy; no zero mode, and `align` keeps
            the output bias, which no symmetry moves).
        splits: more named (inputs, labels) splits to measure, after "train", "test", "ood".
        find_mis: `find_mis(model, loss)` gives the start for "mis" and "saddle"
            (`maximally_invariant_point` by default).
        The others as in `digits_mlp_problem`.
    """
    if start is None:
        start = "zero" if layers == 1 else "mis"
    inputs = data.x_train.shape[1]
    model = digits_mlp(hidden, activation, inputs=inputs, layers=layers, outputs=outputs).to(
        data.x_train.device
    )
    if start == "zero" and layers != 1:
        raise ValueError(
            f"start='zero' needs layers=1: with {layers} hidden layers the all-zero point has "
            "no negative curvature outside the output bias; use start='mis'"
        )
    binary = outputs == 1
    widths = "-".join(str(width) for width in (inputs, *[hidden] * layers, outputs))
    problem = module_problem(
        f"{family}-{widths}-{activation}",
        model,
        classification_loss if binary else F.cross_entropy,
        (data.x_train, data.y_train),
        test=(data.x_test, data.y_test),
        ood=ood,
        zero_modes=0 if binary else 1,
        weight_decay=weight_decay,
    )
    point = zero_point(model, data) if start == "zero" else find_mis(model, problem.loss)
    all_splits = {**problem.splits, **(splits or {})}
    return replace(problem, start=point, splits=all_splits)
