"""Benchmark: a small problem's gradient and whole Hessian from the loss's exact derivatives
(`linalg.exact`) against autograd's, and one `eigh` of the Hessian for scale.

For the tree MDP at depths 4 to 7 (15 to 127 parameters; seed 0, at the start moved 0.1 along a
random direction): medians of `--repeats` calls, one torch thread, of the engine's autograd path
(the gradient's graph, then every Hessian row from one batched backward pass), of the tree's
closed form (`problems/tree_loss.py`), and of `torch.linalg.eigh` of the result, which a ride or
climb step also pays; the largest difference between the two Hessians.

Run: `python bench/exact_derivatives.py` (about 10 s).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import print_table, samples

from ridgerider.linalg.operators import gradient_and_hessian
from ridgerider.problems.tree_mdp import TreeMDP


def autograd_path(loss, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`gradient_and_hessian` of a plain function of `loss` (which hides its exact derivatives)."""
    return gradient_and_hessian(lambda x: loss(x), theta)


def row(depth: int, repeats: int) -> list[object]:
    tree = TreeMDP.build(depth, 0)
    loss = tree.problem().loss
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(tree.states, generator=generator, dtype=torch.float64)
    theta = tree.start + 0.1 * direction / direction.norm()
    _, reference = autograd_path(loss, theta)
    _, exact = loss.gradient_and_hessian(theta)
    works = (
        lambda: autograd_path(loss, theta),
        lambda: loss.gradient_and_hessian(theta),
        lambda: torch.linalg.eigh(exact),
    )
    times = [statistics.median(samples(work, repeats)) for work in works]
    return [
        depth,
        tree.states,
        *(f"{1000 * t:.3f}" for t in times),
        f"{times[0] / times[1]:.1f}x",
        f"{(reference - exact).abs().max().item():.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_table(
        ["depth", "params", "autograd ms", "exact ms", "eigh ms", "speed-up", "max |difference|"],
        "rrrrrrr",
        (row(depth, args.repeats) for depth in (4, 5, 6, 7)),
    )


if __name__ == "__main__":
    main()
