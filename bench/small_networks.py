"""Small user networks (at most 128 parameters, `module_problem`): what the default search
returns against the other settle modes and against random restarts, at equal wall time.

A network of at most 128 parameters is a small problem: the default spec hops between minima
(rides descend to minima, then climbs from every minimum find the saddles over its basin's rim)
and has no node budget. Networks are not the problems that default was measured on (the tree
MDP, the classic functions, the lever game), so this measures it on networks no test or other
benchmark uses: tanh regressors 5-H-1 (a smooth target of three inputs, 64 Gaussian points)
and tanh classifiers 4-H-3 (three classes cut by two inputs, 80 Gaussian points), each from its
zero point or, with `--start mis`, its maximally invariant saddle, weight decay 1e-3, for
every `--seeds` and `--hidden`.

Methods, each given the default search's wall time (at most `--seconds`):
- the default spec;
- settle = "saddle" (the tree settles on the saddle beneath each ride's end and branches there;
  climbs from minima as by default);
- settle = "saddle" without climbs;
- random restarts: PyTorch's default initialisation, each polished to a minimum as the
  search's small-problem leaves are.

Columns: functions (minima whose outputs on the training inputs differ by more than 1e-4 from
every other's: class probabilities for a classifier), minima, the best training loss, the
share of the search's HVPs its climbs took, seconds and why the search stopped.

Run: `python bench/small_networks.py [--seeds 2-3] [--hidden 3,5] [--seconds 20] [--start mis]`
(one thread; about 4 times `--seconds` a network, 8 networks by default: 11 minutes).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import print_table, seed_range
from search import restarts
from torch import Tensor, nn
from torch.nn import functional as F

from ridgerider.problems.base import Problem, module_problem
from ridgerider.search import SearchSpec, search
from tests.problems import tanh_regressor

SAME_FUNCTION = 1e-4
MODES: dict[str, dict[str, object]] = {
    "Ridge Rider, default": {},
    "Ridge Rider, settle saddle": {"settle": "saddle"},
    "Ridge Rider, settle saddle, no climbs": {"settle": "saddle", "climb_minima": False},
}


def regressor(seed: int, hidden: int, start: str) -> tuple[Problem, Callable[[Tensor], Tensor]]:
    """A 5-`hidden`-1 tanh regressor from `start` ("zero": its zero point, "mis": its maximally
    invariant saddle; `tests.problems.tanh_regressor`), and its outputs on its inputs."""
    name = f"regressor 5-{hidden}-1, seed {seed}"
    problem, x = tanh_regressor(seed, hidden, _start(start), name)
    return problem, lambda theta: problem.to_module(theta)(x)


def classifier(seed: int, hidden: int, start: str) -> tuple[Problem, Callable[[Tensor], Tensor]]:
    """A 4-`hidden`-3 tanh classifier from `start` (as `regressor`'s; its zero point has the
    output bias at the log class frequencies), and its class probabilities on its inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(80, 4, generator=generator, dtype=torch.float64)
    labels = (x[:, 0] > 0.4).long() + (x[:, 1] > 0).long()
    net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 3)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        net[2].bias.copy_(torch.bincount(labels, minlength=3).double().log())
    name = f"classifier 4-{hidden}-3, seed {seed}"
    problem = module_problem(
        name,
        net,
        F.cross_entropy,
        (x, labels),
        weight_decay=1e-3,
        zero_modes=1,
        start=_start(start),
    )
    return problem, lambda theta: problem.to_module(theta)(x).softmax(1)


def _start(start: str) -> str | None:
    """`module_problem`'s start: "mis", or None (the module's parameters, zeroed above)."""
    return "mis" if start == "mis" else None


def functions(outputs: Callable[[Tensor], Tensor], thetas: list[Tensor]) -> int:
    """How many of `thetas` compute different functions (see the module doc)."""
    kept: list[Tensor] = []
    with torch.no_grad():
        for theta in thetas:
            out = outputs(theta)
            if all((out - other).abs().max().item() > SAME_FUNCTION for other in kept):
                kept.append(out)
    return len(kept)


def row(
    problem: Problem, outputs: Callable[[Tensor], Tensor], method: str, seconds: float
) -> list[object]:
    """One method's table row on `problem`, within `seconds`."""
    started = time.perf_counter()
    if method == "random restarts":
        thetas = restarts(problem, seconds)
        found = [(theta, problem.loss(theta).item()) for theta in thetas]
        share, stopped = "-", "time"
    else:
        result = search(problem, SearchSpec(max_seconds=seconds, **MODES[method]))
        found = [(p.theta, p.loss) for p in result.points("minimum")]
        edges = [labels for *_, labels in result.graph.edges(data=True)]
        climbed = sum(e["hvps"] for e in edges if e["eigenvalue"] > 0)
        share = f"{climbed / max(sum(e['hvps'] for e in edges), 1):.0%}"
        stopped = result.stopped
    elapsed = time.perf_counter() - started
    best = f"{min(loss for _, loss in found):.4f}" if found else "-"
    count = functions(outputs, [theta for theta, _ in found])
    return [problem.name, method, count, len(found), best, share, f"{elapsed:.1f}", stopped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="2-3", help="a data seed or a range, e.g. 2-3")
    parser.add_argument("--hidden", default="3,5", help="hidden widths, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="each method's cap")
    parser.add_argument("--start", choices=("zero", "mis"), default="zero", help="the start")
    args = parser.parse_args()
    torch.set_num_threads(1)
    widths = [int(width) for width in args.hidden.split(",")]
    rows = []
    for make in (regressor, classifier):
        for seed in seed_range(args.seeds):
            for hidden in widths:
                problem, outputs = make(seed, hidden, args.start)
                first = row(problem, outputs, "Ridge Rider, default", args.seconds)
                seconds = float(first[6])
                rows.append(first)
                print(" | ".join(map(str, first)), flush=True)
                for method in [*list(MODES)[1:], "random restarts"]:
                    rows.append(row(problem, outputs, method, seconds))
                    print(" | ".join(map(str, rows[-1])), flush=True)
    print(f"\n# bench/small_networks.py, torch {torch.__version__}, 1 thread\n")
    print_table(
        ["network", "method", "functions", "minima", "best loss", "climbs' HVPs", "s", "stop"],
        "llrrrrrl",
        rows,
    )


if __name__ == "__main__":
    main()
