"""A one-hidden-layer MLP on scikit-learn's digits (which ship inside scikit-learn: no download).

Layout of the flat vector: `nn.Sequential(Linear(64, H), act, Linear(H, 10))` parameters in
`named_parameters()` order (W1, b1, W2, b2). The loss is the mean cross-entropy on the training
split plus `weight_decay * (||W1||^2 + ||W2||^2)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from ridgerider.flat import FlatLayout, eval_mode, module_loss
from ridgerider.problems.base import Problem, module_factory
from ridgerider.problems.symmetry import align

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
}
INPUTS, CLASSES = 64, 10


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
    hidden: int, activation: str = "tanh", dtype: torch.dtype = torch.float64, inputs: int = INPUTS
) -> nn.Sequential:
    """An untrained `Linear(inputs, hidden) -> activation -> Linear(hidden, 10)` network."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
    return nn.Sequential(
        nn.Linear(inputs, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, CLASSES)
    ).to(dtype)


def digits_loss(
    model: nn.Sequential, data: DigitsSplit, weight_decay: float = 0.5e-3
) -> Callable[[Tensor], Tensor]:
    """Training loss of `model` as a function of its flat parameters (see the module doc)."""
    data_loss, _ = module_loss(model, F.cross_entropy, [(data.x_train, data.y_train)])
    layout = FlatLayout.of(model)

    def loss(theta: Tensor) -> Tensor:
        params = layout.unflatten(theta)
        penalty = params["0.weight"].square().sum() + params["2.weight"].square().sum()
        return data_loss(theta) + weight_decay * penalty

    return loss


def symmetric_point(unit: Tensor, hidden: int) -> Tensor:
    """The flat vector in which every hidden unit is a copy of `unit`.

    `unit` holds one hidden unit's parameters: incoming weights (64 for digits), bias (1),
    outgoing weights (10) and the output bias (10). Such a point is fixed by every permutation
    of the hidden units, so the Hessian there has eigenvalues repeated H - 1 times.
    """
    inputs = unit.numel() - 1 - 2 * CLASSES
    w_in, b_in, w_out, b_out = torch.split(unit, [inputs, 1, CLASSES, CLASSES])
    return torch.cat(
        [
            w_in.repeat(hidden),
            b_in.repeat(hidden),
            w_out.repeat_interleave(hidden),
            b_out,
        ]
    )


def symmetric_saddle(
    loss: Callable[[Tensor], Tensor],
    hidden: int,
    seed: int = 0,
    gradient_tol: float = 1e-10,
    max_newton_steps: int = 50,
    inputs: int = INPUTS,
) -> Tensor:
    """The maximally invariant point: `loss` minimised over points with all hidden units equal.

    Minimising inside the symmetric subspace (one unit's 85 parameters, in float64) keeps the
    point exactly symmetric; minimising over all parameters would let round-off break the
    symmetry. L-BFGS brings it close, then Newton steps on the 85 x 85 reduced Hessian polish
    it to `gradient_tol` (a pseudo-inverse step: the softmax shift of the output bias is an
    exactly flat direction).
    """

    def reduced(unit: Tensor) -> Tensor:
        return loss(symmetric_point(unit, hidden))

    def value_and_grad(unit: np.ndarray) -> tuple[float, np.ndarray]:
        gradient, value = torch.func.grad_and_value(reduced)(torch.as_tensor(unit))
        return value.item(), gradient.numpy()

    generator = torch.Generator().manual_seed(seed)
    unit0 = 0.1 * torch.randn(inputs + 1 + 2 * CLASSES, generator=generator, dtype=torch.float64)
    # scipy's BLAS threads spin between the optimiser's calls and starve torch's (5x slower).
    with threadpool_limits(1, user_api="blas"):
        result = minimize(
            value_and_grad,
            unit0.numpy(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 5_000, "gtol": 1e-3},
        )
    unit = torch.as_tensor(result.x)
    for _ in range(max_newton_steps):
        gradient = torch.func.grad(reduced)(unit)
        if gradient.norm() <= gradient_tol:
            break
        curvature, directions = torch.linalg.eigh(torch.func.hessian(reduced)(unit))
        solvable = curvature.abs() > 1e-10 * curvature.abs().max()
        coordinates = directions[:, solvable].T @ gradient / curvature[solvable]
        unit = unit - directions[:, solvable] @ coordinates
    return symmetric_point(unit, hidden)


def zero_point(model: nn.Sequential, data: DigitsSplit) -> Tensor:
    """W1 = W2 = b1 = 0 and b2 = log class frequencies: an exact critical point."""
    layout = FlatLayout.of(model)
    frequencies = torch.bincount(data.y_train, minlength=CLASSES).to(torch.float64)
    frequencies /= frequencies.sum()
    theta = torch.zeros(layout.numel, dtype=data.x_train.dtype)
    theta[-CLASSES:] = frequencies.log().to(theta.dtype)
    return theta


STARTS = ("zero", "saddle")


def digits_mlp_problem(
    hidden: int = 8,
    activation: str = "tanh",
    weight_decay: float = 0.5e-3,
    seed: int = 0,
    start: str = "zero",
) -> Problem:
    """The `digits-mlp` problem: a 64-hidden-10 MLP on digits, starting at a symmetric saddle.

    Args:
        hidden: hidden units.
        activation: "tanh" (odd: sign flips are symmetries too), "relu" or "gelu".
        weight_decay: the coefficient of ||W1||^2 + ||W2||^2 in the loss.
        seed: the train/test split's seed.
        start: "zero" (W = b1 = 0, b2 = log class frequencies: invariant to every permutation
            and sign flip) or "saddle" (all hidden units equal, minimised in that subspace).
    """
    name = f"digits-mlp-64-{hidden}-10-{activation}"
    return mlp_problem(name, digits_split(seed), hidden, activation, weight_decay, start)


def mlp_problem(
    name: str,
    data: DigitsSplit,
    hidden: int,
    activation: str,
    weight_decay: float,
    start: str,
    ood: tuple[Tensor, Tensor] | None = None,
) -> Problem:
    """A one-hidden-layer MLP classifier on `data` as a Problem (see `digits_mlp_problem`)."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    inputs = data.x_train.shape[1]
    model = digits_mlp(hidden, activation, inputs=inputs)
    loss = digits_loss(model, data, weight_decay)
    if start == "zero":
        point = zero_point(model, data)
    else:
        point = symmetric_saddle(loss, hidden, inputs=inputs)

    def align_units(reference: Tensor, theta: Tensor) -> Tensor:
        return align(
            reference,
            theta,
            inputs=inputs,
            hidden=hidden,
            outputs=CLASSES,
            odd_activation=activation == "tanh",
        )

    layout = FlatLayout.of(model)

    def predict(theta: Tensor, batch: Tensor) -> Tensor:
        with eval_mode(model):
            return functional_call(model, layout.unflatten(theta), (batch,))

    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    if ood is not None:
        splits["ood"] = ood
    return Problem(
        name,
        loss,
        layout.numel,
        point,
        zero_modes=1,
        align=align_units,
        predict=predict,
        splits=splits,
        to_module=module_factory(model),
    )
