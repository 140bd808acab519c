"""Tree MDP: how the paying leaves found grow with the time budget, and where the descents
from the climbs' saddles lead.

The default search rides from the start to minima, then climbs from every minimum to a saddle
and descends from there along each of its negative eigenvectors (`climb_minima`). This runs
the default spec with each `--budgets` time budget on each tree and prints, per budget, the
paying leaves found, those the start's own rides found, the minima, and the descents from
climb-reached saddles by where they ended: back at the minimum climbed from ("parent"), at a
minimum the start's rides found ("start's minima"), at another point found before ("other
known"), or at a point found first by that descent ("new"); each tree's share is printed as it
finishes. If the leaves grow slowly with the budget while most descents end at known points,
the search's order, not its speed, is what limits it.

Run: `python bench/tree_mdp_reach.py --depth 7 --seeds 100-105 --budgets 10,20,30` (one
thread; it runs for the sum of the budgets times the trees: 6 minutes here).
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

import networkx as nx
import torch
from common import print_table, seed_range
from minimum_hopping import first_nodes_of_paying_leaves

from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchSpec, search

DESTINATIONS = ("parent", "start's minima", "other known", "new")


def descent_destinations(graph: nx.MultiDiGraph) -> Counter[str]:
    """Where each descent from a saddle that a climb reached ended (see the module doc)."""
    counts: Counter[str] = Counter()
    for saddle, data in graph.nodes(data=True):
        parent = data["parent"]
        if parent is None or graph.nodes[parent]["point"].kind != "minimum":
            continue
        for _, target, labels in graph.out_edges(saddle, data=True):
            if labels["eigenvalue"] >= 0:
                continue
            reached = graph.nodes[target]
            if target == parent:
                counts["parent"] += 1
            elif reached["parent"] == saddle:
                counts["new"] += 1
            elif reached["parent"] == 0:
                counts["start's minima"] += 1
            else:
                counts["other known"] += 1
    return counts


def measure(tree: TreeMDP, seconds: float) -> dict[str, float]:
    result = search(tree.problem(), SearchSpec(max_seconds=seconds))
    paying = set(tree.solutions())
    graph = result.graph
    minima = [n for n, d in graph.nodes(data=True) if d["point"].kind == "minimum"]
    leaves = first_nodes_of_paying_leaves(tree, graph)
    from_start = {
        tree.greedy_leaf(graph.nodes[n]["point"].theta)
        for n in minima
        if graph.nodes[n]["parent"] == 0
    } & paying
    return {
        "found": len(leaves) / len(paying),
        "from start": len(from_start) / len(paying),
        "minima": len(minima),
        **descent_destinations(graph),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--seeds", default="100-105", help="a tree seed or a range, e.g. 100-105")
    parser.add_argument("--budgets", default="10,20,30", help="seconds a search, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seconds in (float(b) for b in args.budgets.split(",")):
        runs = []
        for seed in seed_range(args.seeds):
            runs.append(measure(TreeMDP.build(args.depth, seed), seconds))
            found = 100 * runs[-1]["found"]
            print(f"  seed {seed}, {seconds:g} s: {found:.1f} % of the paying leaves", flush=True)

        def mean(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.mean(run.get(key, 0) for run in runs)

        descents = sum(mean(key) for key in DESTINATIONS)
        rows.append(
            [
                f"{seconds:g}",
                f"{100 * mean('found'):.1f}",
                f"{100 * mean('from start'):.1f}",
                f"{mean('minima'):.0f}",
                f"{descents:.0f}",
                *(f"{100 * mean(key) / max(descents, 1):.0f}" for key in DESTINATIONS),
            ]
        )
        print(f"  {seconds:g} s: {rows[-1][1]} % of the paying leaves", flush=True)
    print(
        f"\ntree-mdp depth {args.depth}, seeds {args.seeds}, the default spec (means over the"
        " trees; destinations: % of the descents from climb-reached saddles)\n"
    )
    header = ["seconds", "% paying found", "% by the start's rides", "minima", "descents"]
    print_table([*header, *DESTINATIONS], "r" * (len(header) + len(DESTINATIONS)), rows)


if __name__ == "__main__":
    main()
