"""L-BFGS on a torch loss of one flat vector: scipy's optimiser, torch's gradients."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController
from torch import Tensor

from ridgerider.linalg.exact import exact_derivatives

# Past steps kept. A network leaf's descent from PyTorch's initialisation reaches the same
# minimum with 100 in 1.9 to 2.6 times fewer evaluations and 1.4 to 2 times less time than
# with scipy's 10 (digits-mlp, colored-digits: `python bench/lbfgs_memory.py`); mnist-mlp's
# 13,002 parameters pay 20 % more a step for it.
MEMORY = 100


def lbfgs(
    loss: Callable[[Tensor], Tensor],
    start: Tensor,
    *,
    gradient_tol: float,
    max_iterations: int,
    memory: int = MEMORY,
) -> tuple[Tensor, float]:
    """The point L-BFGS-B reaches from `start` (same dtype and device) and its loss. scipy's
    BLAS runs on one thread meanwhile: its threads spin between the optimiser's calls and
    starve torch's (5x slower, measured). Gradients come from the loss's exact derivatives
    where it carries them (`linalg.exact`), else from plain autograd, whose call costs less
    than torch.func's transform (1.35 against 1.85 ms on digits-mlp)."""
    exact = exact_derivatives(loss)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        if exact is not None:
            value, gradient = exact.value_and_gradient(
                torch.as_tensor(x, dtype=start.dtype, device=start.device)
            )
            return value.item(), gradient.double().cpu().numpy()
        point = torch.as_tensor(x, dtype=start.dtype, device=start.device).requires_grad_(True)
        with torch.enable_grad():
            value = loss(point)
            if value.requires_grad:
                (gradient,) = torch.autograd.grad(value, point, materialize_grads=True)
            else:  # a loss that does not depend on the point
                gradient = torch.zeros_like(point)
        return value.item(), gradient.double().cpu().numpy()

    with _threadpools().limit(limits=1, user_api="blas"):
        result = minimize(
            value_and_grad,
            start.double().cpu().numpy(),
            jac=True,
            method="L-BFGS-B",
            options={
                "maxiter": max_iterations,
                "gtol": gradient_tol,
                "ftol": 0.0,
                "maxcor": memory,
            },
        )
    return torch.as_tensor(result.x, dtype=start.dtype, device=start.device), float(result.fun)


@cache
def _threadpools() -> ThreadpoolController:
    """The process's thread pools, found once: looking them up scans the loaded libraries
    (1.4 ms, as much as a whole descent of a small problem's L-BFGS)."""
    return ThreadpoolController()
