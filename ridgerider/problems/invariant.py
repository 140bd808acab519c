"""The maximally invariant saddle (MIS) of an MLP: every hidden layer's units identical.

The hidden units of each layer of an MLP can be permuted without changing its function, so
the loss is invariant under the product of the symmetric groups S_{H_1} x ... x S_{H_L}. The
points that every permutation fixes form a small subspace: one input-weight vector shared by
all units of the first hidden layer, one scalar for all of a hidden-to-hidden weight matrix,
one vector over the outputs shared by every column of the output weights, constant hidden
biases. By the principle of symmetric criticality a critical point of the loss restricted to
that subspace is a critical point of the full loss; there the Hessian commutes with the
permutations, so its eigenvalues repeat as the group's irreducible representations predict.
For two or more hidden layers the all-zero point has no negative curvature outside the output
bias, so this is the start that works at any depth.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ridgerider.flat import eval_mode
from ridgerider.lbfgs import lbfgs


@dataclass(frozen=True)
class SymmetryBlock:
    """Hessian eigenvalues of one symmetry type at a point fixed by the permutations.

    Attributes:
        representation: "trivial" (the fixed subspace itself), "standard(l)" (the standard
            representation of S_{H_l}, hidden layer l counted from 1) or
            "standard(l) x standard(l+1)".
        multiplicity: how often each eigenvalue of this type repeats (the representation's
            dimension).
        count: how many distinct eigenvalues of this type there are (generically).
    """

    representation: str
    multiplicity: int
    count: int


@dataclass(frozen=True)
class InvariantLayout:
    """The Linear layers of an MLP, as the hidden-unit permutations see them.

    The flat parameter vector is the layers' `[weight (out x in, row-major), bias]` in order,
    which is `named_parameters()` order for an `nn.Sequential`.

    Attributes:
        widths: `(inputs, H_1, ..., H_L, outputs)`, L >= 1 hidden layers.
        biased: whether each of the L + 1 Linear layers has a bias.
    """

    widths: tuple[int, ...]
    biased: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.widths) < 3:
            raise ValueError(f"an MLP needs at least one hidden layer, got widths {self.widths}")
        if len(self.biased) != len(self.widths) - 1:
            raise ValueError(
                f"biased needs one flag per Linear layer ({len(self.widths) - 1}), "
                f"got {len(self.biased)}"
            )

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    @property
    def numel(self) -> int:
        pairs = zip(self.widths[:-1], self.widths[1:], self.biased, strict=True)
        return sum(fan_out * (fan_in + bias) for fan_in, fan_out, bias in pairs)

    def _reduced_sizes(self) -> list[int]:
        """Per Linear layer, the sizes of its shared weights and of its shared bias."""
        inputs, outputs, last = self.widths[0], self.widths[-1], len(self.biased) - 1
        sizes = []
        for layer, bias in enumerate(self.biased):
            weight = inputs if layer == 0 else outputs if layer == last else 1
            sizes += [weight, (outputs if layer == last else 1) * bias]
        return sizes

    @property
    def reduced_numel(self) -> int:
        """The dimension of the fixed subspace."""
        return sum(self._reduced_sizes())

    def embed(self, reduced: Tensor) -> Tensor:
        """The flat parameters of the fixed point that `reduced` describes (differentiable).

        `reduced` holds, layer by layer, the shared weights then the shared bias: the first
        layer's input-weight vector and bias; one weight and one bias per hidden-to-hidden
        layer; the output layer's weight vector (one entry per output) and its bias.
        """
        if reduced.shape != (self.reduced_numel,):
            raise ValueError(
                f"reduced must have shape ({self.reduced_numel},), got {tuple(reduced.shape)}"
            )
        pieces = iter(torch.split(reduced, self._reduced_sizes()))
        last = len(self.biased) - 1
        flat = []
        for layer, bias in enumerate(self.biased):
            fan_in, fan_out = self.widths[layer], self.widths[layer + 1]
            weight, shared_bias = next(pieces), next(pieces)
            if layer == last:
                flat += [weight[:, None].expand(fan_out, fan_in).reshape(-1), shared_bias]
            else:
                flat += [weight.expand(fan_out, fan_in).reshape(-1)]
                flat += [shared_bias.expand(fan_out)] if bias else []
        return torch.cat(flat)

    def symmetry_blocks(self) -> tuple[SymmetryBlock, ...]:
        """The Hessian's eigenvalue multiplicities that the permutations predict at a fixed
        point: the isotypic decomposition of the parameter space under S_{H_1} x ... x S_{H_L}.

        A hidden layer l's units span trivial + standard (dimension H_l - 1); its incoming
        weights carry `inputs` copies of the standard one (one if l > 1), its bias one, its
        outgoing weights `outputs` copies (one if l < L); a hidden-to-hidden weight matrix also
        carries standard(l) x standard(l+1) once. The counts add up to `numel`.
        """
        blocks = [SymmetryBlock("trivial", 1, self.reduced_numel)]
        hidden = self.hidden
        for layer, width in enumerate(hidden):
            incoming = self.widths[0] if layer == 0 else 1
            outgoing = self.widths[-1] if layer == len(hidden) - 1 else 1
            copies = incoming + self.biased[layer] + outgoing
            if width > 1:
                blocks.append(SymmetryBlock(f"standard({layer + 1})", width - 1, copies))
        for layer, (first, second) in enumerate(itertools.pairwise(hidden)):
            if first > 1 and second > 1:
                name = f"standard({layer + 1}) x standard({layer + 2})"
                blocks.append(SymmetryBlock(name, (first - 1) * (second - 1), 1))
        return tuple(blocks)


def invariant_layout(module: nn.Module) -> InvariantLayout:
    """The layout of an MLP: an `nn.Sequential` of `nn.Linear` layers with parameter-free
    modules (elementwise activations) in between.

    A module between two Linear layers must map a permutation of its input features to the
    same permutation of its outputs (checked on a random batch, in eval mode); parameter-free
    modules before the first or after the last Linear layer are not constrained.

    Raises:
        ValueError: `module` is not such an `nn.Sequential` (the offending child is named), or
            has fewer than two Linear layers (no hidden layer).
    """
    if not isinstance(module, nn.Sequential):
        raise ValueError(
            "the maximally invariant point needs an nn.Sequential of nn.Linear layers and "
            f"elementwise activations, got {type(module).__name__}"
        )
    children = list(module.named_children())
    linear = [i for i, (_, child) in enumerate(children) if isinstance(child, nn.Linear)]
    if len(linear) < 2:
        raise ValueError(
            f"the maximally invariant point needs a hidden layer (two or more nn.Linear "
            f"layers), got {len(linear)} in {module}"
        )
    for i, (name, child) in enumerate(children):
        if isinstance(child, nn.Linear):
            continue
        if next(child.parameters(), None) is not None:
            raise ValueError(
                f"module {name!r} ({type(child).__name__}) has parameters; only nn.Linear "
                "layers may have parameters in an MLP with permutable hidden units"
            )
        if linear[0] < i < linear[-1]:
            width = children[max(j for j in linear if j < i)][1].out_features
            _check_elementwise(name, child, width, next(module.parameters()))
    layers = [children[i][1] for i in linear]
    owned = {id(p) for layer in layers for p in layer.parameters()}
    if len(owned) != sum(1 for _ in module.parameters()):
        raise ValueError("Linear layers of the MLP share parameters; each needs its own")
    return InvariantLayout(
        (layers[0].in_features, *(layer.out_features for layer in layers)),
        tuple(layer.bias is not None for layer in layers),
    )


def _check_elementwise(name: str, child: nn.Module, width: int, like: Tensor) -> None:
    """Raise unless `child` holds no state and commutes with a cyclic shift and a swap of its
    features (which generate every permutation)."""
    if next(child.buffers(), None) is not None:
        raise ValueError(
            f"module {name!r} ({type(child).__name__}) between Linear layers holds buffers; "
            "only elementwise activations may sit there"
        )
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(3, width, generator=generator, dtype=torch.float64).to(like)
    swap = torch.arange(width)
    swap[:2] = swap[:2].flip(0)
    for order in (torch.arange(width).roll(1), swap):
        with eval_mode(child), torch.no_grad():
            output = child(batch)
            permuted = child(batch[:, order])
        if output.shape != batch.shape or not torch.allclose(permuted, output[:, order]):
            raise ValueError(
                f"module {name!r} ({type(child).__name__}) between Linear layers is not an "
                "elementwise activation: permuting its inputs must permute its outputs alike"
            )


# The scales of the reduced minimisation's random starts, tried in turn until one reaches a
# critical point: 0.1 for the digits MLPs of one to three hidden layers; 1.0 for 64-2-2-2-2-10 and
# 64-3-3-3-3-10, where 0.1 stalls (and 0.3 on the former).
START_SCALES = (0.1, 1.0)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """One torch thread for the block, on the CPU. The reduced problem is small, and between
    the optimiser's calls torch's idle threads spin: with two threads on two busy cores, the
    MIS of the digits 64-8-8-10 MLP took 15 s instead of 3 s."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _minimise(
    loss: Callable[[Tensor], Tensor], start: Tensor, gradient_tol: float, max_newton_steps: int
) -> Tensor:
    """A minimum of a function of a few dozen variables: L-BFGS (with memory for all of them)
    until Newton's method is safe, then Newton steps with the pseudo-inverse of the dense
    Hessian for as long as each lowers the value or the gradient norm."""
    point, _ = lbfgs(
        loss, start, gradient_tol=1e-6, max_iterations=10_000, memory=min(start.numel(), 100)
    )
    gradient, value = torch.func.grad_and_value(loss)(point)
    for _ in range(max_newton_steps):
        if gradient.norm() <= gradient_tol:
            break
        curvature, directions = torch.linalg.eigh(torch.func.hessian(loss)(point))
        solvable = curvature.abs() > 1e-10 * curvature.abs().max()
        coordinates = directions[:, solvable].T @ gradient / curvature[solvable]
        candidate = point - directions[:, solvable] @ coordinates
        candidate_gradient, candidate_value = torch.func.grad_and_value(loss)(candidate)
        if not (candidate_value < value or candidate_gradient.norm() < gradient.norm()):
            break
        point, gradient, value = candidate, candidate_gradient, candidate_value
    return point


def maximally_invariant_point(
    module: nn.Module,
    loss: Callable[[Tensor], Tensor],
    *,
    seed: int = 0,
    gradient_tol: float = 1e-10,
    max_newton_steps: int = 50,
) -> Tensor:
    """The MIS: `loss` minimised where every hidden layer's units are identical.

    The minimisation runs over the fixed subspace's few coordinates (see
    `InvariantLayout.embed`), in float64, so the point stays exactly symmetric (over all
    parameters round-off would break the symmetry and negative curvature amplify it): L-BFGS
    from a small random point, then Newton steps on the dense reduced Hessian with a
    pseudo-inverse (the softmax shift of an output bias is an exactly flat direction). The
    reduced problem may have several local minima; the one reached depends on `seed`. Where the
    point reached is not critical, the minimisation is run again from the same direction
    further out (`START_SCALES`): near zero a deep tanh MLP's reduced loss is flat to high
    order (64-2-2-2-2-10: the gradient left at 7e-7 after L-BFGS and Newton), and there the
    minimisation stalls.

    Args:
        module: an MLP (see `invariant_layout`) with float64 parameters.
        loss: a function of the flat parameters (`named_parameters()` order), invariant under
            the hidden-unit permutations, on `module`'s device.
        seed: seeds the random starting point of the minimisation.
        gradient_tol: the reduced gradient norm at which Newton stops.
        max_newton_steps: the most Newton steps.

    Returns:
        The flat parameters of the MIS, float64, on `module`'s device.

    Raises:
        ValueError: `module` is no such MLP or not float64, or the point is not critical for
            the full loss (`||grad|| > 1e-8 max(1, |loss|)`, the measured norm is named): the
            loss is not permutation invariant or the minimisation did not converge.
    """
    layout = invariant_layout(module)
    like = next(module.parameters())
    if like.dtype != torch.float64:
        raise ValueError(
            f"the maximally invariant point is computed in float64, but the module's parameters "
            f"are {like.dtype}: convert the module and its data with .double()"
        )

    def reduced_loss(reduced: Tensor) -> Tensor:
        return loss(layout.embed(reduced))

    hint = (
        "; is the loss invariant under permutations of the hidden units, and did the "
        "minimisation converge?"
    )
    direction = torch.randn(
        layout.reduced_numel, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    for scale in START_SCALES:
        with _one_thread(like.device):
            start = (scale * direction).to(like.device)
            reduced = _minimise(reduced_loss, start, gradient_tol, max_newton_steps)
        try:
            return checked_critical(loss, layout.embed(reduced).detach(), hint)
        except ValueError as error:
            failure = error
    raise failure


def checked_critical(loss: Callable[[Tensor], Tensor], theta: Tensor, hint: str = "") -> Tensor:
    """`theta`, once its gradient norm is within 1e-8 of max(1, |loss|).

    Raises:
        ValueError: it is not (the message ends with `hint`).
    """
    gradient, value = torch.func.grad_and_value(loss)(theta)
    bound = 1e-8 * max(1.0, abs(value.item()))
    if not gradient.norm() <= bound:
        raise ValueError(
            f"the maximally invariant point is not critical: gradient norm "
            f"{gradient.norm().item():.3g} > {bound:.3g} (loss {value.item():.6g}){hint}"
        )
    return theta
