"""Diagnosis: on colored-mnist, is any minimum a shape reader, or only points along a training
path? What bounds issue 26's "a solution of at least 50% on the test environment".

For each data seed, each method trains the problem's network (392-16-16-1 tanh, weight decay
1e-3) from PyTorch's initialisation with full-batch Adam for 501 steps (IRM's protocol), then
descends from where Adam stopped to a minimum of the same objective (L-BFGS to a gradient below
1e-4, 3,000 iterations at most): the search's networks keep such practical minima. Methods:

- ERM: the pooled risk (the problem's loss);
- IRMv1: as bench/paper.py runs it (penalty 91257 after 190 steps, lr 4.9e-4);
- V-REx: the pooled risk plus 1e4 times the squared difference of the two environments' risks
  after 190 steps (1 before), lr 1e-3, divided by the weight as IRM's code does;
- V-REx from the MIS: the same from the search's start (the maximally invariant saddle, a
  colour reader) instead of PyTorch's initialisation;
- grayscale oracle: ERM on images whose two channels are summed (colour removed; the model
  sees the same shapes in both channels), a bound no method without the colour's identity has.

Along Adam's path (every 25 steps) it records the test-environment accuracy: the best point
(oracle), and the point a rule using only the training environments picks (among points with
training accuracy >= 0.6, the smallest colour sensitivity on validation images, as
bench/paper.py's "colour" rule). Then the minimum below the path's end.

Run: `python bench/colored_ceiling.py --seeds 0-2` (10-15 minutes a seed on one thread, most
of it the descents to minima); `--flips 0.15,0.25,0.85` for other colour strengths.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import default_initialisation, seed_range
from paper import (
    ERM_LR,
    ERM_STEPS,
    IRM_LR,
    IRM_WEIGHT,
    REX_WEIGHT,
    adam_training,
    choose,
    colored_flips,
    environment_profile,
    erm_objective,
    irm_objective,
    print_table,
    rex_objective,
)
from scipy.optimize import minimize as scipy_minimize
from torch import Tensor

from ridgerider.flat import FlatLayout
from ridgerider.problems.base import Problem, classification_loss, weight_penalty
from ridgerider.problems.mnist import (
    ColoredMnist,
    colored_behaviour,
    colored_mnist_data,
    colored_mnist_problem,
    swap_colours,
)

RECORD_EVERY = 25
WEIGHT_DECAY = 1e-3  # IRM's L2, colored-mnist's default
DESCENT_TOL, DESCENT_ITERATIONS = 1e-4, 3000

Objective = Callable[[Tensor, int], Tensor]


def grayscale_objective(problem: Problem) -> Objective:
    """ERM on the training images with their two channels summed, with the problem's weight
    decay (WEIGHT_DECAY, which `problem` is built with)."""
    inputs, labels = problem.splits["train"]
    grayscale = inputs + swap_colours(inputs)
    penalty = weight_penalty(FlatLayout.of(problem.to_module(problem.start)))

    def objective(theta: Tensor, _: int) -> Tensor:
        data = classification_loss(problem.predict(theta, grayscale), labels)
        return data + WEIGHT_DECAY * penalty(theta)

    return objective


def grayscale_problem(problem: Problem, data: ColoredMnist) -> Problem:
    """`problem` whose model sums the two channels of `data`'s images before reading them."""

    def predict(theta: Tensor, inputs: Tensor) -> Tensor:
        return problem.predict(theta, inputs + swap_colours(inputs))

    return dataclasses.replace(problem, predict=predict, behaviour=colored_behaviour(predict, data))


def adam_path(
    problem: Problem, theta: Tensor, objective: Objective, lr: float
) -> tuple[Tensor, list[dict[str, float]]]:
    """Adam's end and the environment profiles of every RECORD_EVERY-th point on its path."""
    path = []

    def record(step: int, point: Tensor) -> None:
        if step % RECORD_EVERY == 0:
            path.append(environment_profile(problem, point))

    end = adam_training(theta, objective, lr, record)
    path.append(environment_profile(problem, end))
    return end, path


def descend(
    problem: Problem, theta: Tensor, objective: Objective, weight: float
) -> tuple[Tensor, float]:
    """L-BFGS from `theta` on the objective's final form times its penalty `weight` (Adam's
    objectives are divided by it, which would make the gradient tolerance that much looser);
    the point and its largest gradient entry."""
    final = ERM_STEPS

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.as_tensor(x, dtype=problem.dtype).requires_grad_(True)
        value = weight * objective(point, final)
        (gradient,) = torch.autograd.grad(value, point)
        return value.item(), gradient.numpy()

    result = scipy_minimize(
        value_and_gradient,
        theta.numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": DESCENT_ITERATIONS, "gtol": DESCENT_TOL, "ftol": 0.0},
    )
    return torch.as_tensor(result.x, dtype=problem.dtype), float(np.abs(result.jac).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-2", help="data seeds, N or A-B")
    parser.add_argument("--flips", default="0.2,0.1,0.9", help="colour flips: env1,env2,test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flips = colored_flips(args.flips)
    seeds = seed_range(args.seeds)
    started = time.perf_counter()
    methods: dict[str, tuple[Callable[[Problem], Objective], float, float, bool, bool]] = {
        "ERM": (erm_objective, ERM_LR, 1.0, False, False),
        "IRMv1": (irm_objective, IRM_LR, IRM_WEIGHT, False, False),
        "V-REx": (rex_objective, ERM_LR, REX_WEIGHT, False, False),
        "V-REx from the MIS": (rex_objective, ERM_LR, REX_WEIGHT, False, True),
        "grayscale oracle": (grayscale_objective, ERM_LR, 1.0, True, False),
    }
    columns = ("end", "best on path", "rule on path", "minimum", "minimum train")
    figures: dict[str, dict[str, list[float]]] = {m: {c: [] for c in columns} for m in methods}
    for seed in seeds:
        problem = colored_mnist_problem(seed=seed, weight_decay=WEIGHT_DECAY, **flips)
        data = colored_mnist_data(seed, **flips)
        for name, (make_objective, lr, weight, gray, from_mis) in methods.items():
            measured = grayscale_problem(problem, data) if gray else problem
            objective = make_objective(problem)
            start = problem.start if from_mis else default_initialisation(problem, seed)
            end, path = adam_path(measured, start, objective, lr)
            minimum, gradient = descend(problem, end, objective, weight)
            at_minimum = environment_profile(measured, minimum)
            row = figures[name]
            row["end"].append(path[-1]["test"])
            row["best on path"].append(max(p["test"] for p in path))
            row["rule on path"].append(choose(path, "colour")["test"])
            row["minimum"].append(at_minimum["test"])
            row["minimum train"].append(at_minimum["train"])
            print(
                f"  seed {seed} {name}: end {path[-1]['test']:.3f}, minimum "
                f"{at_minimum['test']:.3f} (train {at_minimum['train']:.3f}, colour "
                f"{at_minimum['colour']:.2f}, largest gradient entry {gradient:.1e}) "
                f"at {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    rows = [[name, *(format_mean(row[c]) for c in columns)] for name, row in figures.items()]
    print_table(
        f"colored-mnist {flips}, seeds {args.seeds}: test-environment accuracy (%), mean "
        "(min-max) over seeds",
        [
            "method",
            "Adam's end",
            "best on path (oracle)",
            "colour rule on path",
            "minimum below",
            "minimum's train acc",
        ],
        rows,
    )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def format_mean(values: list[float]) -> str:
    percent = [100 * v for v in values]
    if len(percent) == 1:
        return f"{percent[0]:.1f}"
    return f"{statistics.mean(percent):.1f} ({min(percent):.1f}-{max(percent):.1f})"


if __name__ == "__main__":
    main()
