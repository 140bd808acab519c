"""The Ridge Rider search: a tree (a DAG) of points joined by rides along negative-curvature
ridges, expanded by one loop with swappable parts (frontier, archive, budget, steps).

- `spec`: `SearchSpec`, everything that decides a search;
- `steps`: the pure steps (classify the start, expand, follow a ridge, evaluate);
- `ridges`: a branch point's spectrum, grouped, in a canonical basis; which ridges to ride;
- `frontier`, `archive`, `budget`: what to do next, which points are copies, when to stop;
- `loop`: the loop over a `Tree`; `memory`: the tree in memory (`search`).

The names below load their modules (and torch) on first use, so that the package's torch-free
modules (`fingerprint`, `budget`) import alone: the storage commands start without the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ridgerider.search.archive import find_copy
    from ridgerider.search.memory import MemoryTree, SearchResult, search
    from ridgerider.search.spec import SearchSpec
    from ridgerider.search.steps import StartError

_MODULE_OF = {
    "MemoryTree": "memory",
    "SearchResult": "memory",
    "SearchSpec": "spec",
    "StartError": "steps",
    "find_copy": "archive",
    "search": "memory",
}
__all__ = ["MemoryTree", "SearchResult", "SearchSpec", "StartError", "find_copy", "search"]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
