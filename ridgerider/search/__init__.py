"""The Ridge Rider search: a tree (a DAG) of points joined by rides along negative-curvature
ridges, expanded by one loop with swappable parts (frontier, archive, budget, steps).

- `spec`: `SearchSpec`, everything that decides a search;
- `steps`: the pure steps (classify the start, expand, follow a ridge, evaluate);
- `ridges`: a branch point's spectrum, grouped, in a canonical basis; which ridges to ride;
- `frontier`, `archive`, `budget`: what to do next, which points are copies, when to stop;
- `loop`: the loop over a `Tree`; `memory`: the tree in memory (`search`).
"""

from ridgerider.search.archive import find_copy
from ridgerider.search.memory import MemoryTree, SearchResult, search
from ridgerider.search.spec import SearchSpec
from ridgerider.search.steps import StartError

__all__ = ["MemoryTree", "SearchResult", "SearchSpec", "StartError", "find_copy", "search"]
