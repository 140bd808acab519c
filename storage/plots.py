"""The export's figures, as PNG files: the ride tree, a metric scatter with its Pareto front, the
pairwise disagreement heatmap, and per-class accuracy per solution."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from ridgerider.search.fingerprint import to_text

KIND_COLOURS = {
    "minimum": "tab:green",
    "ride-end": "tab:olive",
    "branch": "tab:blue",
    "saddle": "tab:orange",
    "maximum": "tab:red",
    "degenerate": "tab:gray",
}


def ride_tree(graph: nx.MultiDiGraph, path: Path) -> None:
    """Points by depth (colour: kind; branch points are where rides ended with negative
    curvature left), rides as arrows labelled eigen index and sign (a point's fingerprint is
    the labels on its way from the top)."""
    figure = Figure(figsize=(max(6, graph.number_of_nodes() * 0.5), 6))
    axes = figure.subplots()
    for node, data in graph.nodes(data=True):
        graph.nodes[node]["layer"] = data["depth"]
    position = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=-1)
    colours = [KIND_COLOURS[d["kind"]] for _, d in graph.nodes(data=True)]
    nx.draw_networkx_nodes(graph, position, node_color=colours, node_size=300, ax=axes)
    nx.draw_networkx_labels(graph, position, font_size=7, ax=axes)
    nx.draw_networkx_edges(graph, position, ax=axes, arrows=True, alpha=0.5)
    labels = {
        (a, b): to_text(((d["eigen_index"], d["sign"]),)) for a, b, d in graph.edges(data=True)
    }
    nx.draw_networkx_edge_labels(graph, position, edge_labels=labels, font_size=6, ax=axes)
    present = {d["kind"] for _, d in graph.nodes(data=True)}
    for kind, colour in KIND_COLOURS.items():
        if kind in present:
            axes.scatter([], [], color=colour, label=kind)
    axes.legend(loc="upper right", fontsize=8)
    axes.set_title("ride tree (top: the start; label: eigen index and sign)")
    axes.axis("off")
    _save(figure, path)


def pareto_scatter(
    values: np.ndarray, on_front: np.ndarray, names: tuple[str, str], ids: list[int], path: Path
) -> None:
    """Solutions by two metrics, the Pareto front marked and joined."""
    figure = Figure(figsize=(6, 5))
    axes = figure.subplots()
    axes.scatter(values[:, 0], values[:, 1], color="tab:blue", label="solution")
    front = values[on_front]
    order = np.argsort(front[:, 0])
    axes.plot(front[order, 0], front[order, 1], "o-", color="tab:red", label="Pareto front")
    for (x, y), solution_id in zip(values, ids, strict=True):
        axes.annotate(
            str(solution_id), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    axes.legend()
    _save(figure, path)


def disagreement_heatmap(matrix: np.ndarray, ids: list[int], path: Path) -> None:
    """Pairwise prediction disagreement between solutions."""
    figure = Figure(figsize=(max(5, len(ids) * 0.4), max(4, len(ids) * 0.35)))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="viridis")
    axes.set_xticks(range(len(ids)), [str(i) for i in ids], fontsize=7, rotation=90)
    axes.set_yticks(range(len(ids)), [str(i) for i in ids], fontsize=7)
    figure.colorbar(image, ax=axes, label="fraction of test examples predicted differently")
    axes.set_title("pairwise disagreement")
    _save(figure, path)


def per_class_accuracy(matrix: np.ndarray, ids: list[int], classes: list[str], path: Path) -> None:
    """Test accuracy of each solution (rows) on each class (columns)."""
    figure = Figure(figsize=(max(5, len(classes) * 0.6), max(3, len(ids) * 0.35)))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="magma", vmin=min(0.5, float(matrix.min())), vmax=1.0)
    axes.set_xticks(range(len(classes)), classes, fontsize=8)
    axes.set_yticks(range(len(ids)), [str(i) for i in ids], fontsize=7)
    axes.set_xlabel("class")
    axes.set_ylabel("solution")
    figure.colorbar(image, ax=axes, label="test accuracy")
    axes.set_title("per-class test accuracy")
    _save(figure, path)


def _save(figure: Figure, path: Path) -> None:
    """Write the figure as PNG (a bare Figure: no pyplot state, no GUI backend)."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
