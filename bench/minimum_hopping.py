"""Diagnosis for the tree MDP: which paying leaves lie one index-1 saddle beyond the minima
Ridge Rider finds.

Ridge Rider (the default spec, `--seconds` of search) gives a set of minima. From each minimum
this climbs along each of its `--modes` softest Hessian eigenvectors, both ways, to an index-1
saddle (eigenvector following: a rational-function step up the tracked mode, a Newton step
down every other mode, dense Hessians, at most 0.3 long), then descends from that saddle on
both sides (damped Newton); every new minimum is climbed from in turn, breadth-first, until no
new minimum appears or `--hop-seconds` have passed. It prints the paying leaves Ridge Rider
found and those the hops add, with the time of each, per tree.

This measures whether the leaves Ridge Rider misses are reachable by walking the landscape's
minimum-saddle graph from what it found (they are on the trees measured), and at what cost; it
is a prototype with dense Hessians in Python loops, not tuned for speed.

Run: `python bench/minimum_hopping.py --depth 4 --seeds 100 --seconds 30 --modes 4`.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table
from torch import Tensor
from torch.func import grad, hessian

from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec, search

CLIMB_STEPS = 300
DESCENT_STEPS = 200
STEP_LIMIT = 0.3
DESCENT_LIMIT = 0.5
CURVATURE_FLOOR = 1e-3  # |lambda| below this is taken as this in a Newton step
SADDLE_GRAD_TOL = 1e-10
MINIMUM_GRAD_TOL = 1e-8
KICK = 0.05  # the first step up a mode, off the minimum
SIDE_STEP = 1e-3  # the step off a saddle along its negative eigenvector


class Landscape:
    """A tree's loss with its exact gradient and dense Hessian."""

    def __init__(self, tree: TreeMDP) -> None:
        self.gradient = grad(tree.loss)
        self.hessian = hessian(tree.loss)

    def descend(self, theta: Tensor) -> Tensor:
        """A damped Newton descent (|eigenvalues|, floored) to a minimum."""
        for _ in range(DESCENT_STEPS):
            g = self.gradient(theta)
            if g.norm() < 1e-11:
                break
            values, vectors = torch.linalg.eigh(self.hessian(theta))
            step = -(vectors.T @ g) / values.abs().clamp(min=CURVATURE_FLOOR)
            length = step.norm()
            if length > DESCENT_LIMIT:
                step *= DESCENT_LIMIT / length
            theta = theta + vectors @ step
        return theta

    def climb(self, theta: Tensor, mode: Tensor) -> Tensor | None:
        """The index-1 saddle eigenvector following reaches up `mode` from `theta`, or None."""
        theta = theta + KICK * mode
        for _ in range(CLIMB_STEPS):
            g = self.gradient(theta)
            values, vectors = torch.linalg.eigh(self.hessian(theta))
            k = int((vectors.T @ mode).abs().argmax())
            mode = vectors[:, k] * torch.sign(vectors[:, k] @ mode)
            if g.norm() < SADDLE_GRAD_TOL and (values < -1e-9).sum() == 1 and values[k] < 0:
                return theta
            along = vectors.T @ g
            step = -along / values.abs().clamp(min=CURVATURE_FLOOR)
            shift = values[k] / 2 + torch.sqrt(values[k] ** 2 / 4 + along[k] ** 2)
            gap = values[k] - shift
            step[k] = -along[k] / gap if abs(gap) > 1e-14 else STEP_LIMIT
            length = step.norm()
            if length > STEP_LIMIT:
                step *= STEP_LIMIT / length
            theta = theta + vectors @ step
        return None

    def is_minimum(self, theta: Tensor) -> bool:
        smallest = torch.linalg.eigvalsh(self.hessian(theta))[0]
        return bool(self.gradient(theta).norm() < MINIMUM_GRAD_TOL and smallest > 1e-9)


def policy_key(theta: Tensor) -> tuple[int, ...]:
    """One key per policy (sin theta is the policy; theta and pi - theta are the same one)."""
    return tuple(torch.round(torch.sin(theta) * 1e4).long().tolist())


def hop_tree(depth: int, seed: int, seconds: float, modes: int, hop_seconds: float) -> list:
    tree = TreeMDP.build(depth, seed)
    paying = set(tree.solutions())
    began = time.perf_counter()
    result = search(tree.problem(), SearchSpec(problem="tree-mdp", max_seconds=seconds))
    rr_seconds = time.perf_counter() - began
    minima = [p.theta for p in result.points() if p.kind == "minimum"]
    found = {tree.greedy_leaf(m) for m in minima} & paying
    rr_found = len(found)
    land = Landscape(tree)
    seen = {policy_key(m) for m in minima}
    queue = list(minima)
    saddles = 0
    added: list[str] = []
    began = time.perf_counter()
    while queue and time.perf_counter() - began < hop_seconds:
        minimum = queue.pop(0)
        _, vectors = torch.linalg.eigh(land.hessian(minimum))
        for j in range(min(modes, vectors.shape[1])):
            for sign in (1, -1):
                saddle = land.climb(minimum, sign * vectors[:, j])
                if saddle is None:
                    continue
                saddles += 1
                down = torch.linalg.eigh(land.hessian(saddle))[1][:, 0]
                for side in (1, -1):
                    reached = land.descend(saddle + side * SIDE_STEP * down)
                    if not land.is_minimum(reached) or policy_key(reached) in seen:
                        continue
                    seen.add(policy_key(reached))
                    queue.append(reached)
                    leaf = tree.greedy_leaf(reached)
                    if leaf in paying and leaf not in found:
                        found.add(leaf)
                        added.append(f"{leaf}@{time.perf_counter() - began:.0f}s")
    return [
        depth,
        seed,
        len(paying),
        f"{rr_found} in {rr_seconds:.0f} s",
        f"{len(found)} in {time.perf_counter() - began:.0f} s",
        len(seen),
        saddles,
        "exhausted" if not queue else f"{len(queue)} left",
        " ".join(added) or "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seeds", default="100", help="comma-separated tree seeds")
    parser.add_argument("--seconds", type=float, default=30.0, help="Ridge Rider a tree")
    parser.add_argument("--modes", type=int, default=4, help="softest modes climbed a minimum")
    parser.add_argument("--hop-seconds", type=float, default=300.0, help="hopping a tree")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [
        hop_tree(args.depth, int(seed), args.seconds, args.modes, args.hop_seconds)
        for seed in args.seeds.split(",")
    ]
    print(
        f"tree-mdp depth {args.depth}: paying leaves from Ridge Rider's minima, then hops "
        f"over index-1 saddles ({args.modes} softest modes a minimum)"
    )
    print_table(
        [
            "depth",
            "seed",
            "paying",
            "Ridge Rider",
            "with hops",
            "minima",
            "saddles",
            "queue",
            "leaves added (time)",
        ],
        "rrrllrrll",
        rows,
    )


if __name__ == "__main__":
    main()
