"""Benchmark: a small problem's gradient and whole Hessian from the loss's exact derivatives
(`linalg.exact`) against autograd's, and one `eigh` of the Hessian for scale.

For the tree MDP at depths 4 to 7 (15 to 127 parameters; seed 0, at the start moved 0.1 along a
random direction): medians of `--repeats` calls, one torch thread, of the engine's autograd path
(the gradient's graph, then every Hessian row from one batched backward pass), of the tree's
closed form (`problems/tree_loss.py`), of `torch.linalg.eigh` of the result, which a climb
step also pays, and of one autograd Hessian-vector product, which a loss with exact
derivatives replaces by a product with its whole Hessian (`HessianOperator`, up to 128
parameters); the largest difference between the two Hessians.

Then a ride step's tracking at depth 7 (`linalg.tracking.track_eigenvector`, which from 64
parameters finds the continuation from the eigenvalues and shifted solves; below, it takes
every eigenvector as before) against its peer, every eigenvector from `eigh` and the one of
largest overlap taken (the engine's former step, without the call's checks and neighbours,
which both pay): from the tree's start, steps of 0.02 to 0.16 along each of its 8 most
negative eigenvectors, tracked from that eigenvector, the Hessian computed beforehand; medians
over the steps' calls and the largest difference between the two vectors.

Run: `python bench/exact_derivatives.py` (about 20 s).
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch
from common import print_table, samples

from ridgerider.linalg.blocks import whole_matrix
from ridgerider.linalg.operators import DenseOperator, HessianOperator, gradient_and_hessian
from ridgerider.linalg.tracking import track_eigenvector
from ridgerider.problems.tree_mdp import TreeMDP

STEP_LENGTHS = (0.02, 0.04, 0.08, 0.16)  # a ride's accepted steps average 0.08 at depth 7


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
    autograd_product = HessianOperator(lambda x: loss(x), theta)
    works = (
        lambda: autograd_path(loss, theta),
        lambda: loss.gradient_and_hessian(theta),
        lambda: torch.linalg.eigh(exact),
        lambda: autograd_product.matvec(direction),
    )
    times = [statistics.median(samples(work, repeats)) for work in works]
    return [
        depth,
        tree.states,
        *(f"{1000 * t:.3f}" for t in times),
        f"{times[0] / times[1]:.1f}x",
        f"{(reference - exact).abs().max().item():.1e}",
    ]


class Precomputed(DenseOperator):
    """A Hessian as a ride's operator gives it (`dense()`), computed beforehand, so that only
    the tracking is timed."""

    def dense(self) -> torch.Tensor:
        return self.matrix


def every_eigenvector(op: Precomputed, d: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The peer, the engine's former tracking of a whole-space ride step: every eigenpair of the
    whole matrix (eigh), the vector of largest overlap with `d` (sign of d) and its residual."""
    H = whole_matrix(op)
    values, vectors = torch.linalg.eigh(((H + H.T) / 2).to(torch.float64).cpu())
    overlaps = vectors.T @ d
    best = int(overlaps.abs().argmax())
    u = vectors[:, best] * torch.sign(overlaps[best])
    return u, (H @ u - values[best].item() * u).norm().item()


def tracking_row(depth: int, repeats: int) -> list[object]:
    tree = TreeMDP.build(depth, 0)
    loss = tree.problem().loss
    _, start_hessian = loss.gradient_and_hessian(tree.start)
    _, vectors = torch.linalg.eigh(start_hessian)
    neighbours = vectors[:, 1:2]
    steps = [
        (Precomputed(loss.gradient_and_hessian(tree.start + length * vectors[:, index])[1]), index)
        for index in range(8)
        for length in STEP_LENGTHS
    ]
    tracked_seconds, peer_seconds, difference = [], [], 0.0
    for op, index in steps:
        d = vectors[:, index]
        tracked = track_eigenvector(op, d, neighbours).vector
        difference = max(difference, (tracked - every_eigenvector(op, d)[0]).abs().max().item())
        tracked_seconds += samples(partial(track_eigenvector, op, d, neighbours), repeats)
        peer_seconds += samples(partial(every_eigenvector, op, d), repeats)
    new, old = statistics.median(tracked_seconds), statistics.median(peer_seconds)
    return [
        depth,
        tree.states,
        len(steps),
        f"{1000 * old:.3f}",
        f"{1000 * new:.3f}",
        f"{old / new:.2f}x",
        f"{difference:.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_table(
        [
            "depth",
            "params",
            "autograd ms",
            "exact ms",
            "eigh ms",
            "one autograd HVP ms",
            "speed-up",
            "max |difference|",
        ],
        "rrrrrrrr",
        (row(depth, args.repeats) for depth in (4, 5, 6, 7)),
    )
    print_table(
        [
            "depth",
            "params",
            "steps",
            "every eigenvector ms",
            "tracked ms",
            "speed-up",
            "max |difference|",
        ],
        "rrrrrrr",
        [tracking_row(7, args.repeats // 10)],
    )


if __name__ == "__main__":
    main()
