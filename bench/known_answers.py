"""Benchmark: the problems whose solutions are known exactly, searched to the end.

Prints one table: for each problem, the spec (the default, or the one named), the minima the
search returned against the known minima (KNOWN-ANSWERS.md; the tree MDP's paying leaves,
`TreeMDP.solutions`), how many of the returned minima are false (not one of the known ones),
why the search stopped, its points and its seconds. The peer in the same run: gradient descent
(L-BFGS) from uniform random starts in the problem's box for the same time, counting the known
minima it reaches.

Rows: Himmelblau, Styblinski-Tang dim 3 to 6 with the default spec; Styblinski-Tang dim 5 and
6 with `max_nodes = 100000, max_depth = 20` (a node budget: saddle settling, not minimum
hopping); tree-mdp depth 4 and 5 (seeds 0-2) with the default spec and at most 300 s a tree
(`--tree-seconds`: an unseen depth-5 tree takes 4 to 15 minutes to exhaust, bench/RESULTS.md).

Run: `python bench/known_answers.py` (up to an hour on 2 CPU cores, most of it the tree MDP;
`--quick` leaves out the tree MDP and Styblinski-Tang dim 6 under the node budget). Trees no
test uses: `--trees-only --tree-seeds 1000-1019 --tree-depths 4` (only the tree-MDP rows); other
entropies: `--tree-entropy 0.64` (times the depth's default; a tree whose start is a minimum at
that entropy gets a row saying so).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable

import torch
from common import print_table, seed_range, timed

from ridgerider.lbfgs import lbfgs
from ridgerider.problems.base import Problem
from ridgerider.problems.classic import himmelblau, styblinski_tang
from ridgerider.problems.tree_mdp import TreeMDP, default_entropy
from ridgerider.search import SearchResult, SearchSpec, search

HIMMELBLAU_MINIMA = torch.tensor(
    [[3.0, 2.0], [-2.805118, 3.131313], [-3.779310, -3.283186], [3.584428, -1.848127]],
    dtype=torch.float64,
)
STYBLINSKI_TANG_ROOTS = (-2.903534, 2.746803)
MATCH = 1e-4  # KNOWN-ANSWERS.md: coordinates to about 1e-4
LARGE = {"max_nodes": 100_000, "max_depth": 20}
TREE_SECONDS = 300.0  # a tree MDP's search, at most (default)


def point_matcher(known: torch.Tensor) -> Callable[[torch.Tensor], int | None]:
    """The index of the known minimum `theta` is, or None."""

    def match(theta: torch.Tensor) -> int | None:
        distances = (known - theta).norm(dim=1)
        index = int(distances.argmin())
        return index if distances[index] < MATCH else None

    return match


def leaf_matcher(mdp: TreeMDP) -> Callable[[torch.Tensor], int | None]:
    """The paying leaf the policy `theta` reaches greedily, or None."""
    paying = set(mdp.solutions())

    def match(theta: torch.Tensor) -> int | None:
        leaf = mdp.greedy_leaf(theta)
        return leaf if leaf in paying else None

    return match


def descents(problem: Problem, box: float, seconds: float, match) -> set[int]:
    """Known minima L-BFGS reaches from uniform random starts in [-box, box]^n in `seconds`."""
    generator = torch.Generator().manual_seed(0)
    reached: set[int] = set()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = (torch.rand(problem.dim, generator=generator, dtype=torch.float64) * 2 - 1) * box
        theta, _ = lbfgs(problem.loss, start, gradient_tol=1e-9, max_iterations=10_000)
        if (index := match(theta)) is not None:
            reached.add(index)
    return reached


def spec_text(spec: SearchSpec) -> str:
    """The fields `spec` sets, or "default"."""
    fields = spec.model_dump(exclude_defaults=True)
    return ", ".join(f"{k} {v}" for k, v in fields.items()) or "default"


def row(name: str, problem: Problem, spec: SearchSpec, known: int, match, box: float) -> list:
    """Search `problem` with `spec`; the table row, the peer given the same time."""
    searched = timed(search, problem, spec)
    result: SearchResult = searched.value
    matched = [match(point.theta) for point in result.points("minimum")]
    found = {index for index in matched if index is not None}
    peer = descents(problem, box, searched.seconds, match)
    return [
        name,
        spec_text(spec),
        f"{len(found)} / {known}",
        sum(index is None for index in matched),
        result.stopped,
        result.graph.number_of_nodes(),
        f"{searched.seconds:.1f}",
        f"{len(peer)} / {known}",
    ]


def styblinski_tang_row(dim: int, spec: SearchSpec) -> list:
    known = torch.tensor(list(itertools.product(STYBLINSKI_TANG_ROOTS, repeat=dim)))
    problem = styblinski_tang(dim)
    match = point_matcher(known.double())
    return row(f"styblinski-tang dim={dim}", problem, spec, len(known), match, 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="no tree MDP, no budgeted dim 6")
    parser.add_argument("--trees-only", action="store_true", help="only the tree-MDP rows")
    parser.add_argument("--tree-seeds", default="0-2", help="tree seeds, N or A-B (default 0-2)")
    parser.add_argument("--tree-depths", default="4,5", help="tree depths, comma-separated")
    parser.add_argument(
        "--tree-entropy", type=float, default=1.0, help="the trees' entropy, times the default"
    )
    parser.add_argument(
        "--tree-seconds", type=float, default=TREE_SECONDS, help="a tree's search, at most"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# bench/known_answers.py on CPU, torch {torch.__version__}, 1 thread(s)\n")
    header = [
        "problem",
        "spec",
        "minima found / known",
        "false minima",
        "stopped",
        "points",
        "seconds",
        "peer: L-BFGS from random starts, same time",
    ]
    rows = []
    if not args.trees_only:
        rows += [
            lambda: row(
                "himmelblau", himmelblau(), SearchSpec(), 4, point_matcher(HIMMELBLAU_MINIMA), 6.0
            ),
            lambda: styblinski_tang_row(3, SearchSpec()),
            lambda: styblinski_tang_row(4, SearchSpec()),
            lambda: styblinski_tang_row(5, SearchSpec()),
            lambda: styblinski_tang_row(6, SearchSpec()),
            lambda: styblinski_tang_row(5, SearchSpec(**LARGE)),
        ]
        if not args.quick:
            rows.append(lambda: styblinski_tang_row(6, SearchSpec(**LARGE)))
    if not args.quick:
        depths = [int(depth) for depth in args.tree_depths.split(",")]
        for depth, seed in itertools.product(depths, seed_range(args.tree_seeds)):
            name = f"tree-mdp depth={depth} seed={seed}"
            if args.tree_entropy != 1.0:
                name += f" entropy={args.tree_entropy:g}x"
            try:
                mdp = TreeMDP.build(depth, seed, args.tree_entropy * default_entropy(depth))
            except ValueError as error:  # the start is a minimum at this entropy
                rows.append(lambda name=name, error=error: [name, "-", str(error), *"-----"])
                continue
            rows.append(
                lambda mdp=mdp, name=name: row(
                    name,
                    mdp.problem(),
                    SearchSpec(max_seconds=args.tree_seconds),
                    len(mdp.solutions()),
                    leaf_matcher(mdp),
                    math.pi,
                )
            )
    print_table(header, "llrrlrrr", (make() for make in rows))


if __name__ == "__main__":
    main()
