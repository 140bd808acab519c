"""Symmetric linear operators: a dense matrix, or the Hessian of a loss through HVPs.

An operator is anything with `shape`, `dtype`, `device` and `matvec(v)`; an optional batched
`matmat(V)` is used when present. The eigensolver never knows where products come from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vjp, vmap

from ridgerider.flat import Batch, module_loss
from ridgerider.linalg.exact import exact_derivatives

HvpMode = Literal["forward-over-reverse", "reverse-over-reverse"]
HVP_MODES: tuple[HvpMode, ...] = ("forward-over-reverse", "reverse-over-reverse")
Batching = Literal["auto", "vmap", "loop"]
BATCHINGS: tuple[Batching, ...] = ("auto", "vmap", "loop")
# Below this size a vmapped block beats a loop of products on the CPU; above it the larger
# batched activations make the loop faster (bench/eigsh.py, the HVP table).
VMAP_MAX_CPU_SIZE = 10_000
# A loss that carries its exact derivatives (`linalg.exact`) and has at most this many
# parameters gives its products from its whole Hessian, formed once per point: at 15 to 127
# parameters one such Hessian of the tree MDP costs less than one autograd product
# (bench/exact_derivatives.py).
EXACT_DENSE_SIZE = 128


@runtime_checkable
class LinearOperator(Protocol):
    """What the eigensolver needs of an operator. `matmat(V)` is optional."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def matvec(self, v: Tensor) -> Tensor: ...


class _SquareOperator:
    """The `shape`, `dtype` and `device` of an n x n operator, read from a tensor of its size
    (`like.shape[0] == n`), and `matvecs`, the products it has made."""

    def __init__(self, like: Tensor) -> None:
        self._like = like
        self.matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        n = self._like.shape[0]
        return (n, n)

    @property
    def dtype(self) -> torch.dtype:
        return self._like.dtype

    @property
    def device(self) -> torch.device:
        return self._like.device


class DenseOperator(_SquareOperator):
    """A dense symmetric matrix as an operator (tests, tiny problems, comparisons).

    Args:
        matrix: a square, symmetric 2-D tensor.

    Raises:
        ValueError: if `matrix` is not square or not symmetric to rounding.
    """

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"the operator must be square, got shape {tuple(matrix.shape)}")
        scale = matrix.abs().max().item() if matrix.numel() else 0.0
        asym = (matrix - matrix.T).abs().max().item() if matrix.numel() else 0.0
        if asym > 100 * torch.finfo(matrix.dtype).eps * max(scale, 1e-300):
            raise ValueError(
                f"the operator must be symmetric: max |A - A^T| = {asym:.3g} "
                f"against max |A| = {scale:.3g}"
            )
        super().__init__(matrix)
        self.matrix = matrix

    def matvec(self, v: Tensor) -> Tensor:
        self.matvecs += 1
        return self.matrix @ v

    def matmat(self, V: Tensor) -> Tensor:
        self.matvecs += V.shape[1]
        return self.matrix @ V


class HessianOperator(_SquareOperator):
    """The Hessian of a scalar loss of one flat parameter vector, applied by HVPs.

    Products are exact (automatic differentiation, no finite differences) and never form the
    Hessian. `matmat` maps the product over the columns of a block with `vmap`, so a block of
    b products costs far less than b separate ones.

    Args:
        loss: a function of a flat 1-D tensor returning a scalar tensor.
        theta: the point (1-D, floating) where the Hessian is taken; it is detached.
        mode: "reverse-over-reverse" (default: a `vjp` of the gradient whose graph is built at
            the first product and reused for every later one) or "forward-over-reverse" (a `jvp`
            of the gradient, recomputed for every product). `bench/eigsh.py` measures both.
        batching: how `matmat` runs a block: "vmap" over the columns, a "loop" of products, or
            "auto" (vmap on CUDA and for small problems, else the loop; measured, see README).

    Raises:
        ValueError: on a non-1-D or non-floating `theta`, or an unknown `mode` or `batching`.
    """

    def __init__(
        self,
        loss: Callable[[Tensor], Tensor],
        theta: Tensor,
        mode: HvpMode = "reverse-over-reverse",
        batching: Batching = "auto",
    ) -> None:
        if theta.ndim != 1 or not theta.is_floating_point():
            raise ValueError(
                f"theta must be a 1-D floating tensor, got {theta.ndim}-D {theta.dtype}"
            )
        if mode not in HVP_MODES:
            raise ValueError(f"mode must be one of {HVP_MODES}, got {mode!r}")
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        self.theta = theta.detach()
        super().__init__(self.theta)
        self.loss = loss
        self.mode = mode
        if batching == "auto":
            small = theta.numel() <= VMAP_MAX_CPU_SIZE
            batching = "vmap" if theta.device.type == "cuda" or small else "loop"
        self.batching = batching
        self._vjp_fn: Callable[[Tensor], tuple[Tensor]] | None = None
        self._dense: Tensor | None = None
        self._exact = exact_derivatives(loss) is not None and theta.numel() <= EXACT_DENSE_SIZE

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        batches: Sequence[Batch],
        mode: HvpMode = "reverse-over-reverse",
        batching: Batching = "auto",
    ) -> HessianOperator:
        """The Hessian of `module`'s loss on fixed `batches`, at its current parameters.

        The module is evaluated in eval mode through `torch.func.functional_call`; parameter
        order is `named_parameters()` order.
        """
        loss, theta = module_loss(module, loss_fn, batches)
        return cls(loss, theta, mode=mode, batching=batching)

    def matvec(self, v: Tensor) -> Tensor:
        self._check(v, 1)
        self.matvecs += 1
        return self._hvp(v)

    def matmat(self, V: Tensor) -> Tensor:
        self._check(V, 2)
        self.matvecs += V.shape[1]
        if self.batching == "loop":
            return torch.stack([self._hvp(v) for v in V.unbind(1)], dim=1)
        return vmap(self._hvp, in_dims=1, out_dims=1)(V)

    def dense(self) -> Tensor:
        """The whole Hessian, symmetrised, from one block of n products: for small problems
        (`blocks.WHOLE_SPACE_SIZE` parameters or so), where it is cheaper than any iteration
        (`gradient_and_hessian`). Computed once per operator (its point is fixed)."""
        self.matvecs += self.shape[0]
        return self._whole()

    def _whole(self) -> Tensor:
        if self._dense is None:
            self._dense = gradient_and_hessian(self.loss, self.theta)[1]
        return self._dense

    def _hvp(self, v: Tensor) -> Tensor:
        if self._exact:
            return self._whole() @ v
        if self.mode == "forward-over-reverse":
            return jvp(grad(self.loss), (self.theta,), (v,))[1]
        if self._vjp_fn is None:
            _, self._vjp_fn = vjp(grad(self.loss), self.theta)
        return self._vjp_fn(v)[0]

    def _check(self, x: Tensor, ndim: int) -> None:
        n = self.theta.numel()
        if x.ndim != ndim or x.shape[0] != n:
            want = f"({n},)" if ndim == 1 else f"({n}, b)"
            raise ValueError(f"expected a tensor of shape {want}, got {tuple(x.shape)}")


def gradient_and_hessian(loss: Callable[[Tensor], Tensor], theta: Tensor) -> tuple[Tensor, Tensor]:
    """The gradient and the whole Hessian (symmetrised) of `loss` at `theta`, for small problems.

    One batched backward pass through the gradient's plain autograd graph gives every row: at
    15 to 127 parameters functorch's per-call overhead is most of a vmapped `vjp`'s time, and
    this is 2 to 2.5 times faster (on networks' blocks `vmap` of a `vjp` is the faster one,
    bench/eigsh.py's HVP table); the gradient comes from the same graph. A loss that carries
    its exact derivatives (`linalg.exact`) gives both itself.
    """
    exact = exact_derivatives(loss)
    if exact is not None:
        return exact.gradient_and_hessian(theta.detach())
    n = theta.numel()
    with torch.enable_grad():
        x = theta.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss(x), x, create_graph=True)
    identity = torch.eye(n, dtype=theta.dtype, device=theta.device)
    hessian = None
    if gradient.requires_grad:  # else the loss is at most linear in theta
        (hessian,) = torch.autograd.grad(
            gradient, x, identity, is_grads_batched=True, allow_unused=True
        )
    if hessian is None:
        return gradient.detach(), torch.zeros_like(identity)
    return gradient.detach(), (hessian + hessian.T) / 2


def as_operator(op: LinearOperator | Tensor) -> LinearOperator:
    """`op` itself, or a dense tensor wrapped as a `DenseOperator`.

    Raises:
        TypeError: if `op` is neither a tensor nor has `shape`, `dtype`, `device`, `matvec`.
        ValueError: if the operator is not square.
    """
    if isinstance(op, Tensor):
        return DenseOperator(op)
    if not isinstance(op, LinearOperator):
        raise TypeError(
            "op must be a symmetric tensor or have shape, dtype, device and matvec; "
            f"got {type(op).__name__}"
        )
    rows, cols = op.shape
    if rows != cols:
        raise ValueError(f"the operator must be square, got shape {(rows, cols)}")
    return op
