"""Diagnosis: on colored-mnist, does an invariance penalty move the search's start off the colour?

The search starts at the maximally invariant saddle (MIS) of the pooled risk, which reads the
colour (bench/RESULTS.md). Issue 26 asks whether another start would do better. This finds the
MIS of the V-REx objective instead (the pooled risk plus `weight` times the squared difference
of the two training environments' risks, the problem's weight decay kept): every hidden unit
identical, a critical point of the whole network by symmetric criticality, found as the search
finds its own start (`maximally_invariant_point`). For each data seed and weight it prints the
point's accuracies on the two training environments and on the test environment, its colour
sensitivity on validation images (the share whose prediction changes when the channels are
swapped; 1 for a colour reader, 0 for a shape reader) and the cosine between the shared
first-layer feature's two channel halves (1 where both channels carry the same shape feature).
Weight 0 is the search's own start.

Run: `python bench/colored_invariant_start.py --seeds 0-2` (about a minute a seed on one thread);
`--flips 0.15,0.25,0.85` for other colour strengths.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from common import print_table, seed_range
from paper import colored_flips, environment_profile
from torch import Tensor

from ridgerider.problems.base import Problem, classification_loss
from ridgerider.problems.digits import digits_mlp
from ridgerider.problems.invariant import maximally_invariant_point
from ridgerider.problems.mnist import CHANNEL, COLORED_INPUTS, colored_mnist_problem

HIDDEN = 16  # colored-mnist's default width, two hidden layers


def rex_loss(problem: Problem, weight: float) -> Callable[[Tensor], Tensor]:
    """The pooled loss plus `weight` times the squared difference of env1's and env2's risks."""

    def loss(theta: Tensor) -> Tensor:
        risks = [
            classification_loss(problem.predict(theta, inputs), labels)
            for inputs, labels in (problem.splits["env1"], problem.splits["env2"])
        ]
        return problem.loss(theta) + weight * (risks[0] - risks[1]) ** 2

    return loss


def channel_cosine(theta: Tensor) -> float:
    """The cosine between the two channels' halves of the first hidden unit's input weights (at
    the MIS every unit shares them)."""
    feature = theta[:COLORED_INPUTS]
    first, second = feature[:CHANNEL], feature[CHANNEL:]
    return (first @ second / (first.norm() * second.norm()).clamp(min=1e-300)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-2", help="data seeds, N or A-B")
    parser.add_argument("--flips", default="0.2,0.1,0.9", help="colour flips: env1,env2,test")
    parser.add_argument("--weights", default="0,1,10,100,10000", help="V-REx weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    flips = colored_flips(args.flips)
    weights = [float(text) for text in args.weights.split(",")]
    rows = []
    for seed in seed_range(args.seeds):
        problem = colored_mnist_problem(hidden=HIDDEN, seed=seed, **flips)
        for weight in weights:
            model = digits_mlp(HIDDEN, "tanh", inputs=COLORED_INPUTS, layers=2, outputs=1)
            theta = maximally_invariant_point(model, rex_loss(problem, weight))
            profile = environment_profile(problem, theta)
            rows.append(
                [
                    seed,
                    f"{weight:g}",
                    *(f"{100 * profile[split]:.1f}" for split in ("env1", "env2", "test")),
                    f"{profile['colour']:.3f}",
                    f"{channel_cosine(theta):+.3f}",
                ]
            )
            print(*rows[-1], flush=True)
    print(f"\n# colored-mnist {args.flips}: the MIS of the V-REx objective, by weight\n")
    header = ["seed", "V-REx weight", "env1 %", "env2 %", "test %", "colour", "cos(ch0, ch1)"]
    print_table(header, "rrrrrrr", rows)


if __name__ == "__main__":
    main()
