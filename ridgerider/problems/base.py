"""A Problem: a differentiable scalar loss over one flat parameter vector, and where to start."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad
from torch.nn import functional as F

from ridgerider.flat import FlatLayout, eval_mode, module_loss
from ridgerider.problems.invariant import maximally_invariant_point
from ridgerider.problems.symmetry import module_align

START_GRADIENT_TOL = 1e-10


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
        predict: `predict(theta, inputs)` gives class logits, for classification problems.
        splits: named (inputs, labels) pairs to measure behaviour on: "train", "test" and,
            where the problem has one, "ood" (out of distribution).
        to_module: `to_module(theta)` gives a new `nn.Module` holding the flat parameters
            `theta`, for problems built from a module, so stored solutions load as models.
        behaviour: `behaviour(theta)` gives the problem's own behavioural metrics of a
            solution (the leaf a policy reaches, the lever it pulls, ...), stored with it.
        ridge_policy: what the spec's ridge policy "auto" takes here: "one-per-group" where a
            group of equal eigenvalues holds the directions to symmetric copies of one solution
            (a network's interchangeable units), "every-direction" where it holds distinct
            solutions of equal curvature (the lever game's interchangeable levers); None: one
            per group exactly where the problem declares `align`.

    `predict` gives one logit per class, or one logit in all for a binary classifier (the
    probability of class 1 is its sigmoid).
    """

    name: str
    loss: Callable[[Tensor], Tensor]
    dim: int
    start: Tensor | None = None
    zero_modes: int = 0
    align: Callable[[Tensor, Tensor], Tensor] | None = None
    predict: Callable[[Tensor, Tensor], Tensor] | None = None
    splits: Mapping[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    to_module: Callable[[Tensor], nn.Module] | None = None
    behaviour: Callable[[Tensor], Mapping[str, float]] | None = None
    ridge_policy: Literal["one-per-group", "every-direction"] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.start is not None and self.start.shape != (self.dim,):
            raise ValueError(f"start must have shape ({self.dim},), got {tuple(self.start.shape)}")
        if self.ridge_policy not in (None, "one-per-group", "every-direction"):
            raise ValueError(
                "ridge_policy must be None, 'one-per-group' or 'every-direction', got "
                f"{self.ridge_policy!r}"
            )
        if self.start is not None and self.start.requires_grad:
            object.__setattr__(self, "start", self.start.detach())  # a point, not a graph

    @property
    def dtype(self) -> torch.dtype:
        return self.start.dtype if self.start is not None else torch.float64

    @property
    def device(self) -> torch.device:
        """Where the loss is computed: the start's device (the CPU for a problem without one)."""
        return self.start.device if self.start is not None else torch.device("cpu")

    def place(self, theta: Tensor) -> Tensor:
        """`theta` (e.g. loaded from the artifact store, on the CPU) as the loss takes it: on the
        problem's device, in its dtype."""
        return theta.to(device=self.device, dtype=self.dtype)

    def probabilities(self, theta: Tensor, inputs: Tensor) -> Tensor:
        """Class probabilities (N x classes) of the classifier `theta` on `inputs`."""
        return class_probabilities(self.predict(theta, inputs))


def check_critical_start(loss: Callable[[Tensor], Tensor], start: Tensor, label: str) -> None:
    """Raise RuntimeError (a bug, not a user error) unless a closed-form `start` is critical:
    its gradient norm is at most START_GRADIENT_TOL. `label` names the problem and arguments."""
    gradient = grad(loss)(start).norm().item()
    if not gradient <= START_GRADIENT_TOL:
        raise RuntimeError(
            f"{label}: the start is not critical "
            f"(gradient norm {gradient:.3g} > {START_GRADIENT_TOL})"
        )


def class_probabilities(logits: Tensor) -> Tensor:
    """Softmax of per-class logits; for one logit (a binary classifier), [1 - p, p] with p its
    sigmoid."""
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits)
        return torch.cat([1 - positive, positive], 1)
    return logits.softmax(1)


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of per-class logits, or binary cross-entropy of one logit."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def module_problem(
    name: str,
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: tuple[Tensor, Tensor],
    *,
    test: tuple[Tensor, Tensor] | None = None,
    ood: tuple[Tensor, Tensor] | None = None,
    start: Tensor | str | None = None,
    zero_modes: int = 0,
    weight_decay: float = 0.0,
) -> Problem:
    """A Problem from an `nn.Module` and data: the loss on the train split (fixed, eval mode) as a
    function of the flat parameters, and behavioural metrics on every split. Integer targets
    make a classifier (its outputs are class logits: accuracies, per-class accuracies,
    disagreement, merging by function); floating-point targets a regressor, whose metrics are
    `loss_fn` on each split (`train_loss`, `test_loss`, `ood_loss`).

    Args:
        name: a label for reports.
        module: the model; its current parameters are the start unless `start` is given.
        loss_fn: `loss_fn(outputs, targets)`, e.g. `torch.nn.functional.cross_entropy`.
        train: (inputs, targets) the loss is measured on.
        test: an optional held-out split.
        ood: an optional out-of-distribution split.
        start: the starting point (a saddle of the loss), flat; or "mis": the maximally
            invariant saddle of `module`, an MLP (`maximally_invariant_point`), computed in
            float64 whatever the module's dtype (`float64_mis`).
        zero_modes: exactly flat directions of the loss (e.g. 1 for the softmax shift of a
            classifier's output bias), so minima with them are not called degenerate.
        weight_decay: adds `weight_decay * ||w||^2` over the weights (see `decayed`) to the
            loss; without any, networks tend to have flat directions, and their minima are
            degenerate.

    Raises:
        ValueError: a negative `weight_decay`, a `start` string other than "mis", a `start`
            tensor of another dtype than the module's, or (for "mis") a module that is no
            MLP of Linear layers and activations.
    """
    if isinstance(start, str) and start != "mis":
        raise ValueError(f'start must be a flat tensor, None or "mis", got {start!r}')
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    loss = decayed_loss(module, loss_fn, train, weight_decay)
    layout = FlatLayout.of(module)
    theta = layout.flatten(module)

    def predict(flat: Tensor, inputs: Tensor) -> Tensor:
        with eval_mode(module):
            return functional_call(module, layout.unflatten(flat), (inputs,))

    if isinstance(start, str):
        start = float64_mis(module, loss_fn, train, weight_decay).to(theta)
    elif start is not None and start.dtype != theta.dtype:
        raise ValueError(
            f"start must have the module's dtype ({theta.dtype}), got {start.dtype}: "
            f"convert it with start.to({theta.dtype})"
        )
    splits = {"train": train} | ({"test": test} if test else {}) | ({"ood": ood} if ood else {})
    classifier = not train[1].is_floating_point()
    return Problem(
        name,
        loss,
        layout.numel,
        theta if start is None else start,
        zero_modes=zero_modes,
        align=module_align(module, loss, theta if start is None else start),
        predict=predict if classifier else None,
        splits=splits if classifier else {},
        to_module=module_factory(module),
        behaviour=None if classifier else split_losses(predict, loss_fn, splits),
    )


def split_losses(
    predict: Callable[[Tensor, Tensor], Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    splits: Mapping[str, tuple[Tensor, Tensor]],
) -> Callable[[Tensor], dict[str, float]]:
    """A regressor's behaviour: `loss_fn` on each split (`train_loss`, `test_loss`, ...),
    without weight decay."""

    def behaviour(theta: Tensor) -> dict[str, float]:
        with torch.no_grad():
            return {
                f"{split}_loss": loss_fn(predict(theta, inputs), targets).item()
                for split, (inputs, targets) in splits.items()
            }

    return behaviour


def decayed_loss(
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: tuple[Tensor, Tensor],
    weight_decay: float,
) -> Callable[[Tensor], Tensor]:
    """`loss_fn` of `module` on `train` (fixed, eval mode), plus `weight_decay` times the
    squared norm of its weights, as a function of the flat parameters."""
    data_loss, _ = module_loss(module, loss_fn, [train])
    penalty = weight_penalty(FlatLayout.of(module))
    return lambda flat: data_loss(flat) + weight_decay * penalty(flat)


def float64_mis(
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: tuple[Tensor, Tensor],
    weight_decay: float,
) -> Tensor:
    """The maximally invariant saddle of `module`'s decayed loss, float64. A module of another
    dtype gets it from a float64 copy of itself and of the data: the point must be symmetric
    and critical to float64's accuracy, and rounded to float32 afterwards it stays exactly
    symmetric (identical units round alike)."""
    if next(module.parameters()).dtype != torch.float64:
        module = copy.deepcopy(module).double()
        inputs, targets = train
        train = (inputs.double(), targets.double() if targets.is_floating_point() else targets)
    return maximally_invariant_point(module, decayed_loss(module, loss_fn, train, weight_decay))


def decayed(layout: FlatLayout) -> tuple[bool, ...]:
    """Which parameters weight decay applies to, in `layout`'s order: the weight matrices and
    kernels (two or more dimensions), not the biases or normalisation scales (vectors)."""
    return tuple(len(shape) >= 2 for shape in layout.shapes)


def weight_penalty(layout: FlatLayout) -> Callable[[Tensor], Tensor]:
    """`penalty(theta)`: the squared norm of the `decayed` parameters in the flat `theta`,
    summed parameter by parameter."""
    names = [name for name, decay in zip(layout.names, decayed(layout), strict=True) if decay]

    def penalty(theta: Tensor) -> Tensor:
        params = layout.unflatten(theta)
        return sum(params[name].square().sum() for name in names)

    return penalty


def module_factory(module: nn.Module) -> Callable[[Tensor], nn.Module]:
    """`to_module` for problems built from `module`: a copy of it holding the given parameters,
    in eval mode, on the CPU (wherever the problem runs), as a stored model is handed out."""
    template = copy.deepcopy(module).cpu()
    layout = FlatLayout.of(template)

    def to_module(theta: Tensor) -> nn.Module:
        return layout.load(copy.deepcopy(template), theta.detach().cpu()).eval()

    return to_module
