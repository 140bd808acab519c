import torch
from threadpoolctl import ThreadpoolController

from ridgerider.lbfgs import lbfgs


def test_lbfgs_reaches_the_rosenbrock_minimum():
    def rosenbrock(t: torch.Tensor) -> torch.Tensor:
        return (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2

    start = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    theta, value = lbfgs(rosenbrock, start, gradient_tol=1e-10, max_iterations=1_000)
    assert torch.allclose(theta, torch.ones(2, dtype=torch.float64), atol=1e-6)
    assert value < 1e-12


def test_lbfgs_leaves_a_flat_loss_where_it_started():
    start = torch.tensor([0.5, -2.0], dtype=torch.float64)
    constant = torch.tensor(3.0, dtype=torch.float64)
    theta, value = lbfgs(lambda t: constant, start, gradient_tol=1e-10, max_iterations=10)
    assert torch.equal(theta, start)
    assert value == 3.0


def blas_threads() -> list[int]:
    """The thread count of every BLAS thread pool loaded in the process."""
    pools = ThreadpoolController().info()
    return [pool["num_threads"] for pool in pools if pool["user_api"] == "blas"]


def test_lbfgs_runs_blas_on_one_thread_and_restores_it_after():
    """scipy's BLAS is limited to one thread while the optimiser runs (its threads would spin
    between the loss's calls), and its previous thread counts are back once lbfgs returns."""
    assert blas_threads(), "no BLAS thread pool is loaded"
    seen: list[int] = []

    def quadratic(t: torch.Tensor) -> torch.Tensor:
        seen.extend(blas_threads())
        return (t - 1).square().sum()

    with ThreadpoolController().limit(limits=2, user_api="blas"):
        before = blas_threads()
        lbfgs(quadratic, torch.zeros(3, dtype=torch.float64), gradient_tol=1e-10, max_iterations=50)
        after = blas_threads()
    assert seen and set(seen) == {1}
    assert after == before
