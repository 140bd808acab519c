"""A search whose problem lives on CUDA: its rides and leaves run on the GPU, and its minima are
minima of the same problem on the CPU (collected only where CUDA exists)."""

from __future__ import annotations

import torch

from ridgerider.problems.registry import load
from ridgerider.search import SearchSpec, search


def test_a_search_on_cuda_finds_minima_of_the_problem_on_the_cpu():
    gpu = load("digits-mlp:hidden=4,device=cuda")
    cpu = load("digits-mlp:hidden=4")
    assert gpu.device.type == "cuda" and gpu.name == cpu.name
    assert (gpu.start.cpu() - cpu.start).abs().max().item() < 1e-12  # the closed-form start
    spec = SearchSpec(max_depth=2, max_nodes=8, ridges_per_node=2)
    result = search(gpu, spec)
    minima = result.points("minimum")
    assert minima and result.hvps > 0
    bound = spec.leaf_tol * 2.5 * cpu.dim**0.5  # as for a practical minimum on the CPU
    for point in minima:
        assert point.theta.device.type == "cuda"
        theta = point.theta.cpu()
        assert torch.func.grad(cpu.loss)(theta).norm().item() < bound
        spectrum = torch.linalg.eigvalsh(torch.func.hessian(cpu.loss)(theta))
        assert spectrum[0].item() > -1e-6 * spectrum[-1].item()  # no negative curvature
        assert abs(cpu.loss(theta).item() - point.loss) < 1e-9 * (1 + abs(point.loss))
