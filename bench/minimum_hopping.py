"""Tree MDP: the paying leaves Ridge Rider reaches with and without climbs from its minima.

The rides from the start reach about one paying leaf in each quarter of a tree: the other
pair's winner under a state two levels above the leaves lies behind a saddle that no ride from
the start ends on, one index-1 saddle beyond a minimum the rides find. `climb_minima` (on by
default for problems of at most 128 parameters) climbs from every minimum over the saddles
around it and rides down their far sides. This runs the same spec on the same trees with
climbs off and on, in one run, and prints the paying leaves found, the points, the climbs, when
the last paying leaf was found against how long the search ran, and why it stopped.

Run: `python bench/minimum_hopping.py --depth 4 --seeds 100,0,1 --settle minimum` (no
budget: each search runs until its frontier is exhausted) or add `--seconds 60`. Name a settle
to compare the climbs alone: under `--settle auto` (the default) turning the climbs off also
turns the rides to minima into saddle settling or branching (`SearchSpec.settle_target`).
"""

from __future__ import annotations

import argparse
import bisect
import time

import networkx as nx
import torch
from common import print_table

from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec, search
from ridgerider.search.budget import Progress


def row(tree: TreeMDP, spec: SearchSpec, climbs: bool) -> list:
    progress: list[Progress] = []
    started = time.perf_counter()
    result = search(
        tree.problem(), spec.model_copy(update={"climb_minima": climbs}), progress.append
    )
    seconds = time.perf_counter() - started
    minima = result.points("minimum")
    first = first_nodes_of_paying_leaves(tree, result.graph)
    counts = [step.nodes for step in progress]  # the nodes after each unit
    last = progress[bisect.bisect_right(counts, max(first.values()))].seconds if first else 0.0
    climbed = sum(
        1 for _, _, data in result.graph.edges(data=True) if data["end_reason"].startswith("climb")
    )
    return [
        tree.depth,
        tree.seed,
        "on" if climbs else "off",
        f"{len(first)} / {len(tree.solutions())}",
        len(minima),
        result.graph.number_of_nodes() - len(minima),
        climbed,
        f"{last:.1f}",
        f"{seconds:.1f}",
        result.stopped,
    ]


def first_nodes_of_paying_leaves(tree: TreeMDP, graph: nx.MultiDiGraph) -> dict[int, int]:
    """Each paying leaf found, with the first node whose minimum leads to it (nodes are numbered
    in the order found)."""
    paying = set(tree.solutions())
    first: dict[int, int] = {}
    for node, data in graph.nodes(data=True):
        point = data["point"]
        if point.kind == "minimum" and (leaf := tree.greedy_leaf(point.theta)) in paying:
            first[leaf] = min(first.get(leaf, node), node)
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4, help="tree depth, 4-10")
    parser.add_argument("--seeds", default="100,0,1", help="tree seeds, comma-separated")
    parser.add_argument("--seconds", type=float, default=None, help="time budget a search")
    parser.add_argument("--settle", default="auto", choices=("auto", "saddle", "branch", "minimum"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = SearchSpec(max_seconds=args.seconds, settle=args.settle)
    seeds = [int(text) for text in args.seeds.split(",")]
    trees = [TreeMDP.build(args.depth, seed) for seed in seeds]
    header = ["depth", "seed", "climbs", "paying leaves", "minima", "other points"]
    header += ["climbs taken", "last paying leaf (s)", "seconds", "stopped"]
    rows = (row(tree, spec, climbs) for tree in trees for climbs in (False, True))
    print_table(header, "rrlrrrrrrl", rows)


if __name__ == "__main__":
    main()
