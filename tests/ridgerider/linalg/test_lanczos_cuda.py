"""The same eigensolver and HVPs on CUDA agree with the CPU (collected only where CUDA exists)."""

from __future__ import annotations

import pytest
import torch

from ridgerider.linalg import HessianOperator, eigsh, hutchinson_trace
from ridgerider.problems.digits import digits_loss, digits_mlp, digits_split, symmetric_point
from tests.ridgerider.linalg.conftest import CLUSTERED, planted_matrix

CUDA = torch.device("cuda")


def subspace_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal-angle sine between the column spans of a and b (orthonormal)."""
    a, b = a.double().cpu(), b.double().cpu()
    return torch.linalg.matrix_norm(a - b @ (b.T @ a), ord=2).item()


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-5)])
def test_planted_clusters_on_cuda_match_the_cpu(dtype, tol):
    A, spectrum = planted_matrix(300, CLUSTERED, dtype=dtype)
    cpu = eigsh(A, 8, tol=tol)
    gpu = eigsh(A.to(CUDA), 8, tol=tol)
    assert gpu.eigenvectors.device.type == "cuda" and gpu.eigenvalues.device.type == "cuda"
    assert (gpu.eigenvalues.cpu() - spectrum[:8]).abs().max() <= tol * 10
    assert (gpu.eigenvalues.cpu() - cpu.eigenvalues).abs().max() <= 2 * tol * 10
    assert gpu.info.all_converged
    # Repeated eigenvalues make single vectors arbitrary; compare the invariant subspaces.
    assert subspace_distance(gpu.eigenvectors[:, :5], cpu.eigenvectors[:, :5]) < 1e-3


def test_hvp_on_cuda_matches_the_cpu(digits):
    model = digits_mlp(16)
    n = sum(p.numel() for p in model.parameters())
    theta = 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    V = torch.randn(n, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cpu = HessianOperator(digits_loss(model, digits), theta).matmat(V)
    gpu_model = digits_mlp(16).to(CUDA)
    gpu = HessianOperator(digits_loss(gpu_model, digits.to(CUDA)), theta.to(CUDA)).matmat(
        V.to(CUDA)
    )
    assert ((gpu.cpu() - cpu).norm() / cpu.norm()).item() < 1e-10


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_symmetric_saddle_multiplicities_on_cuda(digits, dtype, tol):
    unit = 0.5 * torch.randn(85, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theta = symmetric_point(unit, 8)
    dense = torch.func.hessian(digits_loss(digits_mlp(8), digits))(theta)
    spectrum = torch.linalg.eigvalsh(dense)
    loss = digits_loss(digits_mlp(8, dtype=dtype).to(CUDA), digits_split(dtype=dtype).to(CUDA))
    result = eigsh(HessianOperator(loss, theta.to(dtype).to(CUDA)), 8, tol=tol)
    norm = spectrum.abs().max().item()
    assert (result.eigenvalues.cpu() - spectrum[:8]).abs().max().item() <= tol * norm
    assert result.info.all_converged


def test_hutchinson_on_cuda_matches_the_cpu():
    A, _ = planted_matrix(100, CLUSTERED)
    cpu = hutchinson_trace(A, samples=32)
    gpu = hutchinson_trace(A.to(CUDA), samples=32)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-10)
