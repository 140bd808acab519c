"""Diagnosis: which features colored-mnist's ridges carry, and where a ride along each leads.

At the maximally invariant saddle (MIS) of `colored-mnist` (392-H-H-1), and at the ends of the
rides from it that still hold negative curvature (the depth-1 branch points), the Hessian's most
negative eigenpairs are grouped by equal eigenvalue. For each negative group the first layer's
part of its eigenvectors (units x 392 inputs, stacked over the group) is reduced to its leading
input feature u (the top right singular vector; "rank-1 share" is the energy it holds). A shape
reader weighs both colour channels alike, a colour reader one of them, so the table gives the
share of u's energy in each channel and the cosine between u's two channels' parts. The curvature
of each training environment's own loss along the group (Rayleigh quotient, mean over the group)
says whether the environments agree on the direction.

Then each group's first canonical eigenvector is ridden both ways from the MIS with the default
network ride (adaptive steps), the ride's end descended to a practical minimum (L-BFGS as the
search's leaves): accuracy on the training environments and the test environment, and colour
sensitivity (the share of validation images whose prediction changes when their channels are
swapped: 1 for a colour reader, 0 for a model blind to colour; validation images only).

Run: `python bench/colored_spectrum.py` (25 minutes on one CPU thread, most of it the ten
descents to minima; `--seed`, the flip rates, `--pairs` and `--groups` as options).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import print_table
from torch import Tensor

from ridgerider.critical import settle_to_minimum
from ridgerider.flat import FlatLayout
from ridgerider.linalg import HessianOperator
from ridgerider.linalg.lanczos import eigsh
from ridgerider.problems.base import Problem, classification_loss
from ridgerider.problems.mnist import (
    CHANNEL,
    colored_mnist_data,
    colored_mnist_problem,
    swap_colours,
)
from ridgerider.ride import ride
from ridgerider.search import SearchSpec
from ridgerider.search.ridges import Spectrum, canonical_basis, equal_groups

NEGATIVE_RTOL = 1e-6  # eigenvalues below -NEGATIVE_RTOL * ||H|| are negative
EIGEN_TOL = 1e-6  # eigsh's residual tolerance: groups and features, not a search's rides
GROUP_COLUMNS = (
    "eigenvalue",
    "multiplicity",
    "rank-1 share",
    "channel 0 energy",
    "channel 1 energy",
    "cos(ch0, ch1)",
    "env1 curvature",
    "env2 curvature",
)


def environment_loss(problem: Problem, inputs: Tensor, labels: Tensor) -> Callable:
    """The loss with one environment's data term in place of the pooled one (the weight
    penalty kept)."""

    def loss(theta: Tensor) -> Tensor:
        pooled_inputs, pooled_labels = problem.splits["train"]
        pooled = classification_loss(problem.predict(theta, pooled_inputs), pooled_labels)
        own = classification_loss(problem.predict(theta, inputs), labels)
        return problem.loss(theta) - pooled + own

    return loss


def first_layer(problem: Problem) -> slice:
    """Where the first layer's weight matrix lies in the flat parameter vector."""
    layout = FlatLayout.of(problem.to_module(problem.start))
    return slice(0, layout.shapes[0].numel())


def spectrum(problem: Problem, theta: Tensor, k: int, v0: Tensor | None = None) -> Spectrum:
    """The `k` most negative eigenpairs at `theta`, each group of equal eigenvalues in its
    canonical basis, and ||H|| estimated."""
    op = HessianOperator(problem.loss, theta)
    low = eigsh(op, k, "SA", tol=EIGEN_TOL, v0=v0, seed=0)
    top = eigsh(op, 1, "LA", tol=1e-2, seed=0)
    values = low.eigenvalues.cpu()
    norm = max(abs(top.eigenvalues[0].item()), values.abs().max().item())
    vectors = low.eigenvectors.clone()
    for group in equal_groups(values, norm):
        if len(group) > 1:
            vectors[:, group] = canonical_basis(vectors[:, group])
    hvps = low.info.matvecs + top.info.matvecs
    return Spectrum(values, vectors, norm, hvps, k < theta.numel())


def negative_groups(spectrum: Spectrum) -> list[list[int]]:
    """The complete groups of negative eigenvalues (one the spectrum cut is left out)."""
    negative = spectrum.values < -NEGATIVE_RTOL * spectrum.norm_estimate
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    if len(spectrum.values) < spectrum.vectors.shape[0] and len(groups[-1]) > 1:
        groups = groups[:-1]
    return [g for g in groups if negative[g[0]]]


def group_rows(
    problem: Problem, theta: Tensor, spectrum: Spectrum, env_losses: list, hidden: int
) -> list[list[object]]:
    """One row per negative eigenvalue group of `spectrum` (see the module doc)."""
    weights = first_layer(problem)
    groups = negative_groups(spectrum)
    rows = []
    operators = [HessianOperator(loss, theta) for loss in env_losses]
    for group in groups:
        vectors = spectrum.vectors[:, group]
        parts = vectors[weights].T.reshape(len(group) * hidden, 2 * CHANNEL)
        _, sigma, right = torch.linalg.svd(parts, full_matrices=False)
        u = right[0]
        ch0, ch1 = u[:CHANNEL], u[CHANNEL:]
        cosine = (ch0 @ ch1) / (ch0.norm() * ch1.norm()).clamp_min(1e-300)
        curvatures = [(op.matmat(vectors) * vectors).sum(0).mean().item() for op in operators]
        rows.append(
            [
                f"{spectrum.values[group[0]].item():.4g}",
                len(group),
                f"{(sigma[0] ** 2 / (sigma**2).sum()).item():.3f}",
                f"{(ch0 @ ch0).item():.3f}",
                f"{(ch1 @ ch1).item():.3f}",
                f"{cosine.item():+.3f}",
                *(f"{c:.4g}" for c in curvatures),
            ]
        )
    return rows


def cross_channel_share(problem: Problem, theta: Tensor, hidden: int) -> float:
    """||first-layer channel-1 part of H v|| / ||H v|| for a random first-layer direction v in
    channel 0: the Hessian's first-layer block couples the channels only if some image lights
    both (none does), so this is 0 and the channels meet only through the layers above."""
    weights = first_layer(problem)
    generator = torch.Generator().manual_seed(0)
    layer = torch.zeros(hidden, 2, CHANNEL, dtype=theta.dtype)
    layer[:, 0] = torch.randn(hidden, CHANNEL, generator=generator, dtype=theta.dtype)
    v = torch.zeros_like(theta)
    v[weights] = layer.reshape(-1)
    product = HessianOperator(problem.loss, theta).matvec(v)
    return (product[weights].view(hidden, 2, CHANNEL)[:, 1].norm() / product.norm()).item()


def profile(problem: Problem, data, theta: Tensor) -> dict[str, float]:
    """Accuracies on the environments and the colour sensitivity on validation images."""

    def accuracy(inputs: Tensor, labels: Tensor) -> float:
        with torch.no_grad():
            predicted = (problem.predict(theta, inputs)[:, 0] > 0).long()
        return (predicted == labels).double().mean().item()

    with torch.no_grad():
        val = data.val.inputs
        same = problem.predict(theta, val)[:, 0] > 0
        swapped = problem.predict(theta, swap_colours(val))[:, 0] > 0
    return {
        "env1": accuracy(data.env1.inputs, data.env1.labels),
        "env2": accuracy(data.env2.inputs, data.env2.labels),
        "test": accuracy(data.test.inputs, data.test.labels),
        "colour": (same != swapped).double().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=80, help="eigenpairs at each point")
    parser.add_argument("--env1-flip", type=float, default=0.2)
    parser.add_argument("--env2-flip", type=float, default=0.1)
    parser.add_argument("--test-flip", type=float, default=0.9)
    parser.add_argument("--groups", type=int, default=5, help="groups ridden from the MIS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flips = dict(env1_flip=args.env1_flip, env2_flip=args.env2_flip, test_flip=args.test_flip)
    started = time.perf_counter()
    problem = colored_mnist_problem(hidden=args.hidden, seed=args.seed, **flips)
    data = colored_mnist_data(args.seed, **flips)
    env_losses = [
        environment_loss(problem, data.env1.inputs, data.env1.labels),
        environment_loss(problem, data.env2.inputs, data.env2.labels),
    ]
    spec = SearchSpec()
    config = spec.settle_config(problem)
    ride_config = spec.ride_config(problem)
    start = problem.start
    at_start = spectrum(problem, start, args.pairs)
    headers = ["point", *GROUP_COLUMNS]
    rows = [["MIS", *r] for r in group_rows(problem, start, at_start, env_losses, args.hidden)]
    print(f"MIS: {profile(problem, data, start)}", flush=True)
    print(
        "first-layer Hessian block across channels, relative: "
        f"{cross_channel_share(problem, start, args.hidden):.3g}",
        flush=True,
    )
    ride_rows = []
    groups = negative_groups(at_start)
    for rank, group in enumerate(groups[: args.groups]):
        direction = at_start.vectors[:, group[0]]
        neighbours = at_start.vectors[:, [i for i in range(ride_config.track) if i != group[0]]]
        for sign in (1, -1):
            end = ride(
                problem.loss,
                start,
                sign * direction,
                ride_config,
                neighbours=neighbours,
                norm_estimate=at_start.norm_estimate,
            )
            label = f"group {rank} {'+' if sign > 0 else '-'}"
            at_end = profile(problem, data, end.theta)
            leaf, _ = settle_to_minimum(problem.loss, end.theta, config)
            at_leaf = profile(problem, data, leaf)
            ride_rows.append(
                [
                    label,
                    end.steps,
                    end.reason,
                    f"{end.eigenvalue:.3g}",
                    *(f"{at_end[k]:.3f}" for k in ("env1", "env2", "test", "colour")),
                    *(f"{at_leaf[k]:.3f}" for k in ("env1", "env2", "test", "colour")),
                ]
            )
            print(f"  {label}: {ride_rows[-1]}", flush=True)
            if end.eigenvalue < 0:
                there = spectrum(problem, end.theta, args.pairs, end.vectors)
                rows += [
                    [f"end of {label}", *r]
                    for r in group_rows(problem, end.theta, there, env_losses, args.hidden)
                ]
    print(
        f"\ncolored-mnist seed {args.seed} ({flips}): negative eigenvalue groups and their "
        "first-layer feature\n"
    )
    print_table(headers, "l" + "r" * len(GROUP_COLUMNS), rows)
    print("\nrides from the MIS along each group's first eigenvector, the minimum below each\n")
    print_table(
        [
            "ride",
            "steps",
            "end",
            "curvature at end",
            "end env1",
            "end env2",
            "end test",
            "end colour",
            "min env1",
            "min env2",
            "min test",
            "min colour",
        ],
        "lrlr" + "r" * 8,
        ride_rows,
    )
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
