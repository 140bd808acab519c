"""Benchmark: the Ridge Rider paper's experiments, Ridge Rider against what a user would run
instead, every method in the same run on the same data (protocols: ../shared/PAPER-EXPERIMENTS.md).

Compute: each baseline gets the wall time Ridge Rider took on the same problem and seed (its
start included), also given in gradient-equivalents (that time over one full-batch gradient's).
One torch thread throughout.

1. colored-mnist (392-16-16-1 tanh from its maximally invariant saddle, `--seeds` data seeds,
   colour flips `--colored-flips` env1,env2,test): test-environment accuracy of the solution
   each rule chooses. Ridge Rider runs `colored_spec`: the MIS's 4 most negative ridges (one
   per eigenvalue group) ridden both ways with the default ride, each ride's end polished to a
   practical minimum, within `--colored-seconds` a seed (the rides under way when it runs out
   still end in minima). Rules, each using only the training environments but the oracle:
   "val" = the best accuracy on the validation split (held out from the training
   environments); "invariant" = among the solutions with training accuracy >= 0.6, the
   smallest accuracy gap between the two training environments (what invariance methods
   reason from: a colour reader's accuracy differs by the environments' colour
   reliability, 0.8 vs 0.9); "colour" = among those, the smallest colour sensitivity on the
   validation images (the share whose prediction changes when their channels are swapped);
   "test (oracle)" = the best test-environment accuracy, which no
   user has: labelled as such. Methods: Ridge Rider, ERM (full-batch Adam, lr 1e-3, 501 steps,
   IRM's protocol, 5 seeds: mean), a deep ensemble of those 5 (averaged probabilities), IRMv1
   (IRM's reference penalty weight 91257 after 190 steps, lr 4.9e-4, 501 steps, 5 seeds: mean),
   V-REx (penalty 1e4 on the squared risk difference after 190 steps, lr 1e-3, 501 steps, 5
   seeds: mean; bench/colored_ceiling.py follows its path and the minimum below it),
   random restarts (PyTorch's initialisation, L-BFGS to a gradient below 1e-4, for Ridge
   Rider's time in all: the run in progress at the deadline is stopped).
2. tree-mdp (`--trees` random trees at each depth 4-7): the fraction of the distinct
   positive-reward leaves (`TreeMDP.solutions`, known exactly) that some method's minima reach
   greedily. Ridge Rider with the default spec, only the budget set (`--tree-seconds` a tree,
   10 s by default): at this size each ride descends to a minimum and every minimum is climbed
   from over the saddles around it (`settle` "auto", `climb_minima` on); and Ridge Rider
   branching at the ends of its rides (settle "branch", the paper's Algorithm 1), climbing from
   its minima too; gradient descent (step 0.5, 1,500 steps, 16 runs at a time with the tree
   loss's exact gradients, batched, as the search takes them; a run's greedy leaf counted once
   its gradient is below 1e-4) from
   uniform random parameters, from the MIS plus noise (sd 0.01), and from the MIS moved 1.0
   along a random direction, each for the default search's time (at least one batch: the
   table says how much longer that was).
3. lever-game (8 levers at 1.0, two at 0.8, one at 0.6; `--runs` independent runs, each its own
   relabelling): Ridge Rider's solutions are named by their fingerprint; the fingerprint with
   the best average cross-play between runs is the one played, and its cross-play is reported
   over every pair of runs (every fingerprint found in all runs is listed). Self-play:
   gradient descent from a random strategy pair per run, cross-play over the same pairs.
4. mnist-mlp (784-H-H-10 tanh from its MIS, H = 16 and 64, 5,000 images): best test accuracy
   of Ridge Rider (`mnist_spec`: one ride deep, leaves polished to minima, `--mnist-seconds`
   each, 300 by default) and of full-batch Adam from random seeds (lr 1e-2, until the gradient
   is below 1e-4 or 1,000 steps) for the same time; then the per-class test accuracy of each
   Ridge Rider solution, by fingerprint.

Run: `python bench/paper.py` (35.5 minutes on 2 CPU cores with nothing else running, measured
2026-11-30; longer now: the tree-MDP part alone, `--only tree-mdp` with its default 20 trees a
depth, took 63 minutes on 2026-12-04; see bench/RESULTS.md); `--quick` is a smoke run
(one seed, fewer trees and runs, shorter budgets); `--only NAME` runs one experiment.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from common import adam_from_seeds, default_initialisation, gradient_seconds, timed
from scipy.optimize import minimize as scipy_minimize
from torch import Tensor
from torch.func import grad

from ridgerider.problems.base import Problem, class_probabilities, classification_loss
from ridgerider.problems.lever_game import LeverGame, cross_play
from ridgerider.problems.mnist import colored_mnist_problem, mnist_mlp_problem
from ridgerider.problems.tree_loss import TreeLoss
from ridgerider.problems.tree_mdp import TreeMDP
from ridgerider.search import SearchResult, SearchSpec, search
from ridgerider.search.fingerprint import to_text

PAPER_COLORED = (
    "ERM 17.1, IRM 66.9, V-REx 67.2-68.6, RR ~58, grayscale oracle 73, best possible 75 "
    "(full MNIST)"
)
ENSEMBLE = 5
ERM_STEPS, ERM_LR = 501, 1e-3
IRM_WEIGHT, IRM_ANNEAL, IRM_LR = 91257.18, 190, 4.9e-4
REX_WEIGHT = 1e4
INVARIANT_MIN_TRAIN = 0.6
RESTART_TOL = 1e-4
GD_STEP, GD_STEPS, GD_BATCH, GD_TOL = 0.5, 1500, 16, 1e-4
MIS_NOISE, RANDOM_RADIUS = 0.01, 1.0
DEPTHS = (4, 5, 6, 7)
ADAM_STEPS = 1000
MNIST_HIDDEN = (16, 64)
EXPERIMENTS = ("colored-mnist", "tree-mdp", "lever-game", "mnist-mlp")


def mean_sd(values: Iterable[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [scale * v for v in values]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


# --- colored-mnist ---------------------------------------------------------------------------


def accuracy(problem: Problem, theta: Tensor, split: str) -> float:
    inputs, labels = problem.splits[split]
    predicted = class_probabilities(problem.predict(theta, inputs)).argmax(1)
    return (predicted == labels).double().mean().item()


def environment_profile(problem: Problem, theta: Tensor) -> dict[str, float]:
    profile = {s: accuracy(problem, theta, s) for s in ("train", "val", "env1", "env2", "test")}
    profile["gap"] = abs(profile["env1"] - profile["env2"])
    profile["colour"] = problem.behaviour(theta)["colour_sensitivity"]
    return profile


def choose(profiles: list[dict[str, float]], rule: str) -> dict[str, float]:
    """The profile a selection rule picks (see the module doc)."""
    if rule == "val":
        return max(profiles, key=lambda p: p["val"])
    eligible = [p for p in profiles if p["train"] >= INVARIANT_MIN_TRAIN] or profiles
    if rule == "invariant":
        return min(eligible, key=lambda p: (p["gap"], -p["val"]))
    if rule == "colour":
        return min(eligible, key=lambda p: (p["colour"], -p["val"]))
    return max(profiles, key=lambda p: p["test"])


def adam_training(
    theta: Tensor,
    objective: Callable[[Tensor, int], Tensor],
    lr: float,
    visit: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """ERM_STEPS of full-batch Adam on `objective(theta, step)`; `visit(step, theta)` sees each
    point before its step is taken."""
    parameter = theta.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([parameter], lr=lr)
    for step in range(ERM_STEPS):
        if visit is not None:
            visit(step, parameter.detach())
        optimiser.zero_grad()
        objective(parameter, step).backward()
        optimiser.step()
    return parameter.detach()


def train_several(
    problem: Problem, objective: Callable[[Tensor, int], Tensor], lr: float, first_seed: int
) -> list[Tensor]:
    """ENSEMBLE models trained by Adam from PyTorch's initialisation with successive seeds."""
    return [
        adam_training(default_initialisation(problem, first_seed + k), objective, lr)
        for k in range(ENSEMBLE)
    ]


def erm_objective(problem: Problem) -> Callable[[Tensor, int], Tensor]:
    """ERM: the pooled risk of the training environments, weight decay included."""
    return lambda theta, _: problem.loss(theta)


def irm_objective(problem: Problem) -> Callable[[Tensor, int], Tensor]:
    """IRMv1: the pooled risk (the problem's loss, weight decay included) plus the squared
    gradient of each training environment's risk with respect to a scale on the logits."""

    def objective(theta: Tensor, step: int) -> Tensor:
        penalty = theta.new_zeros(())
        for environment in ("env1", "env2"):
            inputs, labels = problem.splits[environment]
            scale = torch.ones((), dtype=theta.dtype, requires_grad=True)
            risk = classification_loss(problem.predict(theta, inputs) * scale, labels)
            (slope,) = torch.autograd.grad(risk, scale, create_graph=True)
            penalty = penalty + slope**2 / 2
        weight = IRM_WEIGHT if step >= IRM_ANNEAL else 1.0
        total = problem.loss(theta) + weight * penalty
        return total / weight if weight > 1 else total

    return objective


def rex_objective(problem: Problem) -> Callable[[Tensor, int], Tensor]:
    """V-REx (Krueger et al. 2021): the pooled risk plus REX_WEIGHT times the squared
    difference of the two training environments' risks (weight 1 for the first IRM_ANNEAL
    steps, as IRM anneals), normalised by the weight."""

    def objective(theta: Tensor, step: int) -> Tensor:
        risks = [
            classification_loss(problem.predict(theta, inputs), labels)
            for inputs, labels in (problem.splits["env1"], problem.splits["env2"])
        ]
        weight = REX_WEIGHT if step >= IRM_ANNEAL else 1.0
        total = problem.loss(theta) + weight * (risks[0] - risks[1]) ** 2
        return total / weight if weight > 1 else total

    return objective


def restarts_within(problem: Problem, seconds: float) -> list[Tensor]:
    """Random restarts (PyTorch's initialisation, L-BFGS) for `seconds` in all: the run in
    progress at the deadline is stopped, and kept only if it reached a gradient below 1e-4."""
    deadline = time.perf_counter() + seconds
    gradient_and_value = torch.func.grad_and_value(problem.loss)
    minima, seed = [], 0

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        gradient, value = gradient_and_value(torch.as_tensor(x, dtype=problem.dtype))
        return value.item(), gradient.numpy()

    def stop_at_deadline(_: object) -> None:
        if time.perf_counter() > deadline:
            raise StopIteration

    while time.perf_counter() < deadline:
        start = default_initialisation(problem, seed).numpy()
        seed += 1
        result = scipy_minimize(
            value_and_gradient,
            start,
            jac=True,
            method="L-BFGS-B",
            callback=stop_at_deadline,
            options={"maxiter": 20_000, "gtol": 1e-7, "ftol": 0.0},
        )
        theta = torch.as_tensor(result.x, dtype=problem.dtype)
        if grad(problem.loss)(theta).norm() < RESTART_TOL:
            minima.append(theta)
    return minima


def ensemble_test_accuracy(problem: Problem, thetas: list[Tensor]) -> float:
    inputs, labels = problem.splits["test"]
    probabilities = torch.stack(
        [class_probabilities(problem.predict(t, inputs)) for t in thetas]
    ).mean(0)
    return (probabilities.argmax(1) == labels).double().mean().item()


def colored_spec(seconds: float, seed: int = 0) -> SearchSpec:
    """Ridge Rider on colored-mnist: the MIS's 4 most negative ridges (one per eigenvalue
    group) ridden both ways with the default ride, each ride's end a leaf polished to a
    practical minimum, within `seconds`."""
    return SearchSpec(max_depth=1, ridges_per_node=4, max_seconds=seconds, seed=seed)


def mnist_spec(seconds: float) -> SearchSpec:
    """Ridge Rider on mnist-mlp: the MIS's most negative ridges (4, one per eigenvalue group)
    ridden both ways with the default ride (adaptive steps, tracking to 3e-3 of ||H||), each
    ride's end a leaf polished to a practical minimum, within `seconds` (the rides under way
    when it runs out still end in minima)."""
    return SearchSpec(max_depth=1, ridges_per_node=4, max_seconds=seconds)


def leaves(result: SearchResult) -> list:
    """A network search's solutions: its minima and the ride ends it kept."""
    return [p for p in result.points() if p.kind in ("minimum", "ride-end")]


def colored_mnist(seeds: int, seconds_per_seed: float, flips: dict[str, float]) -> None:
    rules = ("val", "invariant", "colour", "test (oracle)")
    results: dict[str, dict[str, list[float]]] = {}
    costs: dict[str, list[float]] = {}
    counts: dict[str, list[float]] = {}

    def note(method: str, sets: list[list[dict[str, float]]], cost: float, count: int) -> None:
        """The test accuracy each rule chooses from each set of solution profiles (a method
        that reached no minimum in its time has nothing to choose), its cost and count."""
        chosen = results.setdefault(method, {r: [] for r in (*rules, "train")})
        for profiles in filter(None, sets):
            for rule in rules:
                chosen[rule].append(choose(profiles, rule)["test"])
            chosen["train"].append(choose(profiles, "val")["train"])
        costs.setdefault(method, []).append(cost)
        counts.setdefault(method, []).append(count)

    for seed in range(seeds):
        built = timed(colored_mnist_problem, seed=seed, **flips)
        problem: Problem = built.value
        unit = gradient_seconds(problem)
        rr = timed(search, problem, colored_spec(seconds_per_seed, seed))
        minima = leaves(rr.value)
        seconds = built.seconds + rr.seconds
        profiles = [environment_profile(problem, p.theta) for p in minima]
        note("Ridge Rider", [profiles], seconds / unit, len(profiles))
        print(
            f"  colored-mnist seed {seed}: Ridge Rider {len(minima)} solutions in {seconds:.0f} s"
        )
        for profile in profiles:
            print(f"    Ridge Rider solution: {profile}")
        erm = timed(train_several, problem, erm_objective(problem), ERM_LR, 1000)
        each = [[environment_profile(problem, theta)] for theta in erm.value]
        note("ERM (Adam, 501 steps)", each, erm.seconds / ENSEMBLE / unit, 1)
        ensemble = f"ERM ensemble of {ENSEMBLE}"
        note(ensemble, [], erm.seconds / unit, ENSEMBLE)
        tested = ensemble_test_accuracy(problem, erm.value)
        for rule in rules:
            results[ensemble][rule].append(tested)
        irm = timed(train_several, problem, irm_objective(problem), IRM_LR, 2000)
        each = [[environment_profile(problem, theta)] for theta in irm.value]
        note("IRMv1", each, irm.seconds / ENSEMBLE / unit, 1)
        rex = timed(train_several, problem, rex_objective(problem), ERM_LR, 3000)
        each = [[environment_profile(problem, theta)] for theta in rex.value]
        note("V-REx (Adam, 501 steps)", each, rex.seconds / ENSEMBLE / unit, 1)
        restarted = restarts_within(problem, seconds)
        print(f"  colored-mnist seed {seed}: {len(restarted)} restarts reached a minimum")
        profiles = [environment_profile(problem, t) for t in restarted]
        note("random restarts (L-BFGS)", [profiles], seconds / unit, len(profiles))
    rows = [
        [
            method,
            f"{statistics.mean(counts[method]):.0f}",
            f"{statistics.mean(costs[method]):,.0f}",
            *(mean_sd(chosen[r]) for r in rules),
            mean_sd(chosen["train"]),
        ]
        for method, chosen in results.items()
    ]
    print_table(
        f"colored-mnist {flips}: test-environment accuracy (%) of the chosen solution, "
        f"{seeds} seed(s); the paper: {PAPER_COLORED}",
        [
            "method",
            "solutions",
            "grad-eq",
            "chosen on val",
            "chosen by env gap",
            "chosen by colour (val)",
            "chosen on test (oracle)",
            "train acc (val choice)",
        ],
        rows,
    )


# --- tree-mdp --------------------------------------------------------------------------------


def descend(mdp: TreeMDP, loss: TreeLoss, starts: Tensor) -> list[int]:
    """Greedy leaves of the points gradient descent reaches from each row of `starts`, with
    the exact gradients the search also takes (`loss`, the tree problem's)."""

    def gradient_of(theta: Tensor) -> Tensor:
        return loss.value_and_gradient(theta)[1]

    theta = starts.clone()
    for _ in range(GD_STEPS):
        theta = theta - GD_STEP * gradient_of(theta)
    converged = gradient_of(theta).norm(dim=1) < GD_TOL
    return [mdp.greedy_leaf(t) for t, ok in zip(theta, converged, strict=True) if ok]


def gradient_descent_leaves(
    mdp: TreeMDP, seconds: float, draw: Callable[[torch.Generator], Tensor]
) -> tuple[set[int], float]:
    """Leaves reached by batches of gradient descent runs from `draw`n starts for `seconds`
    (at least one batch), and the seconds taken."""
    generator = torch.Generator().manual_seed(0)
    loss = mdp.problem().loss
    leaves: set[int] = set()
    started = time.perf_counter()
    while True:
        leaves.update(descend(mdp, loss, torch.stack([draw(generator) for _ in range(GD_BATCH)])))
        if (spent := time.perf_counter() - started) >= seconds:
            return leaves, spent


def found(mdp: TreeMDP, result: SearchResult) -> set[int]:
    return {mdp.greedy_leaf(p.theta) for p in result.points("minimum")}


def tree_mdp(trees: int, seconds: float) -> None:
    methods = (
        "Ridge Rider (default: rides to minima, climbs)",
        "Ridge Rider branching at ride ends",
        "GD from random inits",
        "GD from the MIS + noise",
        "random directions from the MIS",
    )
    fractions: dict[int, dict[str, list[float]]] = {}
    budget: dict[int, list[float]] = {}
    overrun: dict[int, list[float]] = {}
    for depth in DEPTHS:
        fractions[depth] = {m: [] for m in methods}
        for seed in range(trees):
            mdp = TreeMDP.build(depth, seed)
            problem = mdp.problem()
            solutions = set(mdp.solutions())
            default = timed(search, problem, SearchSpec(max_seconds=seconds))
            branching = search(problem, SearchSpec(settle="branch", max_seconds=seconds))
            spent = default.seconds
            budget.setdefault(depth, []).append(spent / gradient_seconds(problem))
            n = mdp.states

            def uniform(g: torch.Generator, n: int = n) -> Tensor:
                return (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi

            def noisy(g: torch.Generator, start: Tensor = problem.start) -> Tensor:
                return start + MIS_NOISE * torch.randn(start.shape, generator=g, dtype=start.dtype)

            def direction(g: torch.Generator, start: Tensor = problem.start) -> Tensor:
                u = torch.randn(start.shape, generator=g, dtype=start.dtype)
                return start + RANDOM_RADIUS * u / u.norm()

            reached = {methods[0]: found(mdp, default.value), methods[1]: found(mdp, branching)}
            for method, draw in zip(methods[2:], (uniform, noisy, direction), strict=True):
                reached[method], taken = gradient_descent_leaves(mdp, spent, draw)
                overrun.setdefault(depth, []).append(taken / spent)
            for method, leaves in reached.items():
                fractions[depth][method].append(len(leaves & solutions) / len(solutions))
        summary = ", ".join(f"{m} {statistics.mean(v):.0%}" for m, v in fractions[depth].items())
        print(f"  tree-mdp depth {depth}: {summary}")
    rows = [
        [
            str(depth),
            str(2 ** (depth - 1)),
            f"{statistics.mean(budget[depth]):,.0f}",
            f"{statistics.mean(overrun[depth]):.1f}",
            *(mean_sd(fractions[depth][m], digits=0) for m in methods),
        ]
        for depth in DEPTHS
    ]
    print_table(
        f"tree-mdp: % of the positive-reward leaves found, {trees} trees a depth (mean ± sd);"
        " the paper: RR finds almost all, the others fail to find half",
        ["depth", "paying leaves", "RR grad-eq", "GD time / RR time", *methods],
        rows,
    )


# --- lever-game ------------------------------------------------------------------------------


def self_play(game: LeverGame, seed: int) -> Tensor:
    """Gradient descent from a random strategy pair of run `seed`."""
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(2 * game.count, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm() * math.sqrt(2)
    gradient_of = grad(game.loss)
    for _ in range(GD_STEPS * 2):
        theta = theta - 0.2 * gradient_of(theta)
    return theta


def lever_game(runs: int, max_nodes: int) -> None:
    solutions: list[dict[str, Tensor]] = []
    self_played: list[Tensor] = []
    started = time.perf_counter()
    for run in range(runs):
        game = LeverGame.build(seed=run)
        result = search(game.problem(), SearchSpec(max_nodes=max_nodes, max_depth=2))
        solutions.append(
            {
                to_text(data["fingerprint"]): data["point"].theta
                for _, data in result.graph.nodes(data=True)
                if data["point"].kind == "minimum"
            }
        )
        self_played.append(self_play(game, 10_000 + run))
    seconds = time.perf_counter() - started
    pairs = [(a, b) for a in range(runs) for b in range(runs) if a != b]
    shared = set.intersection(*(set(s) for s in solutions)) if solutions else set()
    scored = {
        path: [cross_play(solutions[a][path], a, solutions[b][path], b) for a, b in pairs]
        for path in shared
    }

    def cells(values: list[float]) -> list[str]:
        return [f"{statistics.mean(values):.3f}", f"{min(values):.3f}"]

    rows = []
    best = max(scored, key=lambda p: statistics.mean(scored[p])) if scored else None
    game = LeverGame.build(seed=0)
    for path in sorted(scored, key=lambda p: -statistics.mean(scored[p])):
        chosen = " (played: best average cross-play)" if path == best else ""
        pays = f"{game.behaviour(solutions[0][path])['payoff']:.1f}"
        rows.append([f"Ridge Rider, fingerprint {path}{chosen}", pays, *cells(scored[path])])
    plays = [cross_play(self_played[a], a, self_played[b], b) for a, b in pairs]
    rows.append(["self-play (GD from random strategies)", "-", *cells(plays)])
    print_table(
        f"lever-game: cross-play over {len(pairs)} ordered pairs of {runs} runs ({seconds:.0f} s);"
        " the paper: RR 0.6 (optimal), self-play 1/k",
        ["method", "lever pays (run 0)", "mean cross-play", "worst pair"],
        rows,
    )


# --- mnist-mlp -------------------------------------------------------------------------------


def mnist_mlp(hidden: int, max_seconds: float) -> None:
    built = timed(mnist_mlp_problem, hidden=hidden)
    problem: Problem = built.value
    unit = gradient_seconds(problem)
    rr = timed(search, problem, mnist_spec(max_seconds))
    seconds = built.seconds + rr.seconds
    minima = [
        (to_text(data["fingerprint"]), data["point"].theta)
        for _, data in rr.value.graph.nodes(data=True)
        if data["point"].kind in ("minimum", "ride-end")
    ]
    adam = adam_from_seeds(problem, seconds, ADAM_STEPS)
    rows = [
        [
            method,
            str(len(thetas)),
            f"{seconds / unit:,.0f}",
            f"{100 * max((accuracy(problem, t, 'test') for t in thetas), default=0):.1f}",
        ]
        for method, thetas in (
            ("Ridge Rider", [t for _, t in minima]),
            ("Adam from random seeds", adam),
        )
    ]
    print_table(
        f"mnist-mlp 784-{hidden}-{hidden}-10: best test accuracy (%), 1,000 test images, "
        f"{seconds:.0f} s each;"
        " the paper: 98 (full MNIST, 784-128-128-10)",
        ["method", "solutions", "grad-eq", "best test accuracy"],
        rows,
    )
    inputs, labels = problem.splits["test"]
    profile_rows = []
    for fingerprint, theta in sorted(minima, key=lambda m: m[0]):
        predicted = class_probabilities(problem.predict(theta, inputs)).argmax(1)
        per_class = [(predicted[labels == c] == c).double().mean().item() for c in range(10)]
        profile_rows.append([fingerprint, *(f"{100 * a:.0f}" for a in per_class)])
    print_table(
        f"mnist-mlp 784-{hidden}-{hidden}-10: per-class test accuracy (%) of each Ridge Rider "
        "solution, by fingerprint;"
        " the paper: early ridges learn 0 and 1, later ones 8",
        ["fingerprint", *(str(c) for c in range(10))],
        profile_rows,
    )


def colored_flips(text: str) -> dict[str, float]:
    """`--colored-flips` "e1,e2,test" as colored_mnist_problem's keyword arguments."""
    names = ("env1_flip", "env2_flip", "test_flip")
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != len(names) or not all(0.0 <= v <= 1.0 for v in values):
        raise SystemExit(
            f"--colored-flips must be three numbers in [0, 1], e.g. 0.2,0.1,0.9; got {text!r}"
        )
    return dict(zip(names, values, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    parser.add_argument("--seeds", type=int, default=2, help="colored-mnist data seeds")
    parser.add_argument(
        "--colored-seconds", type=float, default=200.0, help="Ridge Rider a colored-mnist seed"
    )
    parser.add_argument(
        "--colored-flips",
        default="0.2,0.1,0.9",
        help="colored-mnist colour flip probabilities: env1,env2,test",
    )
    parser.add_argument("--trees", type=int, default=20, help="tree-mdp trees a depth")
    parser.add_argument("--tree-seconds", type=float, default=10.0, help="Ridge Rider a tree")
    parser.add_argument("--runs", type=int, default=5, help="lever-game independent runs")
    parser.add_argument(
        "--mnist-seconds", type=float, default=300.0, help="Ridge Rider on each mnist-mlp"
    )
    parser.add_argument(
        "--only",
        choices=EXPERIMENTS,
        action="append",
        help="run only these experiments (repeatable)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.trees, args.tree_seconds, args.runs = 1, 2, 1.0, 2
        args.colored_seconds = 30.0
    only = args.only or EXPERIMENTS
    started = time.perf_counter()
    if "lever-game" in only:
        lever_game(args.runs, max_nodes=24)
    if "tree-mdp" in only:
        tree_mdp(args.trees, args.tree_seconds)
    if "colored-mnist" in only:
        colored_mnist(args.seeds, args.colored_seconds, colored_flips(args.colored_flips))
    if "mnist-mlp" in only:
        for hidden in (16,) if args.quick else MNIST_HIDDEN:
            mnist_mlp(hidden, max_seconds=30 if args.quick else args.mnist_seconds)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
