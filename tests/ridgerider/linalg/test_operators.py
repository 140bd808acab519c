"""Hessian-vector products against the dense Hessian, and operator input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ridgerider.linalg import DenseOperator, HessianOperator, as_operator, gradient_and_hessian
from ridgerider.linalg.operators import HVP_MODES
from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split
from ridgerider.problems.tree_mdp import TreeMDP


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("mode", HVP_MODES)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_hvp_matches_dense_hessian_of_a_flat_function(mode, dtype, tol):
    theta = torch.linspace(-1.2, 1.5, 12, dtype=dtype)
    dense = torch.func.hessian(rosenbrock)(theta.double())
    op = HessianOperator(rosenbrock, theta, mode=mode)
    V = torch.randn(12, 5, dtype=torch.float64)
    for column in V.unbind(1):
        assert relative_error(op.matvec(column.to(dtype)).double(), dense @ column) < tol
    assert relative_error(op.matmat(V.to(dtype)).double(), dense @ V) < tol
    assert op.matvecs == 5 + 5


@pytest.mark.parametrize("mode", HVP_MODES)
@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_hvp_of_a_digits_mlp_matches_dense_hessian(digits_h6, mode, batching, dtype, tol):
    loss, n = digits_h6
    theta = 0.3 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dense = torch.func.hessian(loss)(theta)
    loss_in_dtype = digits_loss(digits_mlp(6, dtype=dtype), digits_split(dtype=dtype))
    op = HessianOperator(loss_in_dtype, theta.to(dtype), mode=mode, batching=batching)
    V = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert relative_error(op.matmat(V.to(dtype)).double(), dense @ V) < tol
    assert op.matvecs == 4


class Dropped(nn.Module):
    """A module whose training-mode output is random: curvature must use eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.hidden(x))))


def test_hvp_from_module_uses_fixed_batches_in_eval_mode():
    torch.manual_seed(0)
    model = Dropped().double().train()
    inputs, targets = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    batches = [(inputs[:10], targets[:10]), (inputs[10:], targets[10:])]
    op = HessianOperator.from_module(model, F.cross_entropy, batches)

    params = dict(model.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    theta = torch.cat([params[n].detach().reshape(-1) for n in names])
    assert torch.equal(op.theta, theta)

    def full_batch_eval_loss(t: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(t, [params[n].numel() for n in names])
        views = {n: c.view(params[n].shape) for n, c in zip(names, chunks, strict=True)}
        model.eval()
        out = torch.func.functional_call(model, views, (inputs,))
        model.train()
        return F.cross_entropy(out, targets)

    dense = torch.func.hessian(full_batch_eval_loss)(theta)
    v = torch.randn(theta.numel(), dtype=torch.float64)
    assert relative_error(op.matvec(v), dense @ v) < 1e-10
    assert torch.equal(op.matvec(v), op.matvec(v))
    assert model.training, "the module's own mode is restored"


def test_hessian_operator_rejects_bad_input():
    with pytest.raises(ValueError, match="theta must be a 1-D floating tensor"):
        HessianOperator(rosenbrock, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="theta must be a 1-D floating tensor"):
        HessianOperator(rosenbrock, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="mode must be one of"):
        HessianOperator(rosenbrock, torch.zeros(3), mode="finite-differences")
    with pytest.raises(ValueError, match="batching must be one of"):
        HessianOperator(rosenbrock, torch.zeros(3), batching="threads")
    op = HessianOperator(rosenbrock, torch.zeros(3))
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(3,\), got \(4,\)"):
        op.matvec(torch.zeros(4))
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(3, b\)"):
        op.matmat(torch.zeros(3))


def test_dense_operator_checks_square_and_symmetric():
    with pytest.raises(ValueError, match="must be square"):
        DenseOperator(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="must be symmetric"):
        DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    op = as_operator(torch.eye(3, dtype=torch.float64))
    assert op.shape == (3, 3) and op.dtype == torch.float64
    assert torch.equal(op.matmat(torch.ones(3, 2, dtype=torch.float64)), torch.ones(3, 2))
    with pytest.raises(TypeError, match="must be a symmetric tensor or have shape"):
        as_operator("not an operator")


def test_gradient_and_hessian_match_himmelblaus_closed_form_and_a_linear_loss_has_none():
    """Himmelblau's (x^2 + y - 11)^2 + (x + y^2 - 7)^2 at (1, 2): the gradient and Hessian from
    one batched backward pass equal the closed form; a linear loss's Hessian is zero."""
    theta = torch.tensor([1.0, 2.0], dtype=torch.float64)

    def himmelblau(t: torch.Tensor) -> torch.Tensor:
        return (t[0] ** 2 + t[1] - 11) ** 2 + (t[0] + t[1] ** 2 - 7) ** 2

    x, y = 1.0, 2.0
    a, b = x**2 + y - 11, x + y**2 - 7
    gradient = torch.tensor([4 * x * a + 2 * b, 2 * a + 4 * y * b], dtype=torch.float64)
    hessian = torch.tensor(
        [[12 * x**2 + 4 * y - 42, 4 * x + 4 * y], [4 * x + 4 * y, 4 * x + 12 * y**2 - 26]],
        dtype=torch.float64,
    )
    g, H = gradient_and_hessian(himmelblau, theta)
    assert torch.allclose(g, gradient, atol=1e-12) and torch.allclose(H, hessian, atol=1e-12)
    assert torch.equal(HessianOperator(himmelblau, theta).dense(), H)
    g, H = gradient_and_hessian(lambda t: 3 * t[0] - t[1], theta)
    assert g.tolist() == [3.0, -1.0] and torch.equal(H, torch.zeros(2, 2, dtype=torch.float64))


def test_a_loss_with_exact_derivatives_gives_its_products_from_one_whole_hessian():
    tree = TreeMDP.build(5, 3)
    loss = tree.problem().loss
    generator = torch.Generator().manual_seed(0)
    theta = tree.start + 0.1 * torch.randn(tree.states, generator=generator, dtype=torch.float64)
    calls = []

    class Counted:
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return loss(x)

        def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return loss.value_and_gradient(x)

        def gradient_and_hessian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            calls.append(x)
            return loss.gradient_and_hessian(x)

    op = HessianOperator(Counted(), theta)
    autograd = HessianOperator(lambda x: loss(x), theta)
    V = torch.randn(tree.states, 3, generator=generator, dtype=torch.float64)
    assert relative_error(op.matvec(V[:, 0]), autograd.matvec(V[:, 0])) < 1e-12
    assert relative_error(op.matmat(V), autograd.matmat(V)) < 1e-12
    assert relative_error(op.dense(), autograd.dense()) < 1e-12
    assert len(calls) == 1
    assert op.matvecs == 1 + 3 + tree.states
