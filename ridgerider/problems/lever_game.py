"""The zero-shot coordination lever game of the Ridge Rider paper (after Other-Play).

Two players each pick one of N levers; they are paid the lever's payoff if they pick the same
lever and nothing otherwise. `levers` levers pay 1.0, two pay 0.8, one pays 0.6 (N = levers + 3).
In TRUE labels the payoffs are ordered [1.0] * levers + [0.8, 0.8] + [0.6]. Zero-shot
coordination: each independent run sees the levers under its own labels -- `seed` draws a
random permutation, and seen lever i is true lever `permutation[i]` -- so nothing learnt about a
label carries over between runs; `cross_play` scores a player of one run with a player of
another in the true labels.

Each player's mixed strategy is pi = x^2 / |x|^2 for a vector x of N parameters (the "Born" or
spherical parametrisation); the flat parameter vector is [x_A, x_B]. The searched loss is

    loss = -(J + entropy * (H(pi_A) + H(pi_B))),   J = sum_i pi_A(i) pi_B(i) r(i),

with H the Tsallis entropy of order 3/2, H(pi) = 2 (1 - sum_i pi(i)^(3/2)) = 2 (1 - sum |x_i|^3
/ |x|^3), plus the scale anchor (|x_A|^2 - 1)^2 / 4 + (|x_B|^2 - 1)^2 / 4. Exact, float64, twice
continuously differentiable everywhere (x != 0). Without the anchor the scale of each x would be
an exactly flat direction, and drifting along it rescales the Hessian by 1/|x|^2 (measured:
L-BFGS from a ride's end shrank |x| to 0.04, eigenvalues 1000). The anchor does not touch the
strategies; the game term's gradient is orthogonal to x, so at a critical point |x_A| = |x_B| =
1 and the game term is critical; there x is a null vector of the game term's Hessian, so the
spectrum is the game's with its two zero modes replaced by exactly 2 (zero_modes = 0).

Why not a softmax policy with Shannon entropy (measured with dense Hessians in float64): its
maximum-entropy symmetric critical point has the paper's eigenstructure (the 0.6 lever's ridge
most negative) only below an entropy of about 0.08 (8 levers; above it only the 1.0 levers'
differences are negative), and there the coordinated minima sit at logits ~ payoff / entropy,
where every Hessian eigenvalue is tiny (entropy 0.049: 7.7e-11 on a 1.0 lever, 4.4e-9 on a 0.8
lever, 2.6e-7 on the 0.6 lever): a search cannot tell them from degenerate points. With
x^2 / |x|^2 a deterministic strategy is a finite point, and the coordinated minimum on a lever
paying r has Hessian eigenvalues exactly 2 r - 6 entropy (2 (N - 1) of them) plus 2 (x2, the
scale anchor). Why order 3/2, not 2 (Gini): with order 2 the symmetric start makes every lever
exactly as attractive as every other (pi(i) (r(i) - 2 entropy) is constant), and the N - 1
coordinated directions share ONE eigenvalue: the 1.0 / 0.8 / 0.6 structure disappears.
Shannon entropy with x^2 / |x|^2 is not twice differentiable where pi(i) = 0.

The start (`LeverGame.build`): the symmetric critical point at which every lever is contested --
both players play pi(i) = s(i)^2 with s(i) = (3 e + sqrt(9 e^2 - 4 r(i) lam)) / (2 r(i)), e =
entropy, lam the one number making the s(i)^2 sum to 1 (bisection, then Newton steps in the
symmetric subspace; checked: gradient norm <= 1e-10, and a saddle). Each lever's s(i) may take
either root; of the symmetric critical points this one (every lever on the larger root) had the
highest entropy at entropies 0.05 and 0.1. It puts MORE weight on the lower-paying levers, so
that each is equally contested, and exists up to an entropy of 0.1423 (8 levers; 0.1362 for 10,
0.0984 for 32). At the default entropy 0.05 it is a saddle with N - 1 negative eigenvalues, the
coordinated (A + B) direction of each lever (near the largest entropy only 3 stay negative).
See `start_structure` and the tests; with 8 levers at 1.0: -0.2605 (x1, mostly the 0.6 lever),
-0.2431 (x1, the 0.8 pair's difference), -0.2393 (x1, the 0.8 pair against the 1.0 levers),
-0.2291 (x7, differences among the 1.0 levers), the positive A - B counterparts (0.3970 x7,
0.4275, 0.4390, 0.4911) and 2 (x2, the anchored scales). Riding the most negative one downhill
lands on the 0.6 lever on one side (on the other it leaves the 0.6 lever for a saddle among the
others); the 0.8 pair's ridge lands on one 0.8 lever per sign; the 1.0 eigenspace on 1.0 levers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, hessian

from ridgerider.problems.base import Problem, check_critical_start
from ridgerider.problems.parameters import declare, integer, number

LEVERS_RANGE = (2, 32)
ENTROPY_RANGE = (0.0, 0.2)
DEFAULT_ENTROPY = 0.05
LEVERS = integer("levers", *LEVERS_RANGE, "levers paying 1.0 (two more pay 0.8, one 0.6)")
SEED = integer("seed", 0, 2**63 - 1, "the relabelling's seed")
ENTROPY = number(
    "entropy", *ENTROPY_RANGE, "each player's Tsallis-entropy weight", open_low=True, open_high=True
)
TSALLIS_ORDER = 1.5


def true_payoffs(levers: int) -> Tensor:
    """Payoffs in true labels: [1.0] * levers + [0.8, 0.8] + [0.6]."""
    return torch.tensor([1.0] * levers + [0.8, 0.8, 0.6], dtype=torch.float64)


def relabelling(seed: int, count: int) -> Tensor:
    """The permutation a run with `seed` sees: seen lever i is true lever result[i]."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))


def strategy(x: Tensor) -> Tensor:
    """pi = x^2 / |x|^2."""
    squares = x**2
    return squares / squares.sum()


def tsallis_entropy(x: Tensor) -> Tensor:
    """Tsallis entropy of order 3/2 of pi = x^2 / |x|^2: 2 (1 - sum |x_i|^3 / |x|^3)."""
    q = TSALLIS_ORDER
    return (1 - (x.abs() ** (2 * q)).sum() / (x**2).sum() ** q) / (q - 1)


def _check_theta(theta: Tensor) -> int:
    if theta.dim() != 1 or theta.numel() % 2 or theta.numel() // 2 - 3 < LEVERS_RANGE[0]:
        raise ValueError(f"theta must be a flat vector [x_A, x_B] of 2N entries, got {theta.shape}")
    return theta.numel() // 2


@dataclass(frozen=True, eq=False)
class LeverGame:
    """One run's game: its relabelling, the loss, the start and behavioural metrics.

    Build it with `LeverGame.build(levers, seed, entropy)`; `problem()` gives the Problem.
    """

    levers: int
    seed: int
    entropy: float
    permutation: Tensor
    payoffs: Tensor
    start: Tensor

    @classmethod
    def build(cls, levers: int = 8, seed: int = 0, entropy: float = DEFAULT_ENTROPY) -> LeverGame:
        """The game as run `seed` sees it, with its symmetric start.

        Args:
            levers: how many levers pay 1.0, an integer in [2, 32] (two more pay 0.8, one 0.6).
            seed: the relabelling's seed, an integer in [0, 2**63 - 1].
            entropy: the weight of each player's Tsallis entropy, in (0, 0.2) (below 0.2 every
                coordinated deterministic strategy pair is a strict minimum: 2 r - 6 e > 0).

        Raises:
            ValueError: a parameter is out of range, or the entropy admits no contested start.
            RuntimeError: the start fails its criticality check (a bug, not a user error).
        """
        LEVERS.check(levers)
        SEED.check(seed)
        ENTROPY.check(entropy)
        tau = float(entropy)
        count = levers + 3
        permutation = relabelling(seed, count)
        payoffs = true_payoffs(levers)[permutation]
        amplitude = contested_amplitudes(payoffs, tau)
        game = cls(levers, seed, tau, permutation, payoffs, torch.cat([amplitude, amplitude]))

        # Near the largest admissible entropy the bisection's last digits matter (the root has
        # an infinite slope at the branch point): polish with Newton steps in the symmetric
        # subspace x_A = x_B, which keeps the start exactly symmetric.
        def symmetric(x: Tensor) -> Tensor:
            return game.loss(torch.cat([x, x]))

        for _ in range(5):
            if grad(game.loss)(game.start).norm().item() <= 1e-14:
                break
            step = torch.linalg.solve(hessian(symmetric)(amplitude), grad(symmetric)(amplitude))
            amplitude = amplitude - step
            game = cls(levers, seed, tau, permutation, payoffs, torch.cat([amplitude, amplitude]))
        check_critical_start(
            game.loss, game.start, f"lever-game levers={levers} seed={seed} entropy={tau}"
        )
        if game.start_index() == 0:
            raise ValueError(f"entropy={tau!r} makes the symmetric start a minimum, not a saddle")
        return game

    @property
    def count(self) -> int:
        """N, the number of levers."""
        return self.levers + 3

    def strategies(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(pi_A, pi_B) in this run's (seen) labels."""
        return strategy(theta[: self.count]), strategy(theta[self.count :])

    def true_strategies(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(pi_A, pi_B) in true labels."""
        return tuple(to_true_labels(pi, self.permutation) for pi in self.strategies(theta))

    def expected_payoff(self, theta: Tensor) -> Tensor:
        """J: the self-play expected payoff."""
        pi_a, pi_b = self.strategies(theta)
        return (pi_a * pi_b * self.payoffs.to(theta)).sum()

    def loss(self, theta: Tensor) -> Tensor:
        """The searched loss -(J + entropy * (H(pi_A) + H(pi_B))) + the scale anchor."""
        n = self.count
        x_a, x_b = theta[:n], theta[n:]
        regulariser = tsallis_entropy(x_a) + tsallis_entropy(x_b)
        anchor = ((x_a**2).sum() - 1) ** 2 / 4 + ((x_b**2).sum() - 1) ** 2 / 4
        return anchor - (self.expected_payoff(theta) + self.entropy * regulariser)

    def behaviour(self, theta: Tensor) -> dict[str, float]:
        """Behavioural metrics, levers in TRUE labels.

        Returns:
            lever: player A's greedy lever; lever_b: player B's; payoff: what `lever` pays when
            both pick it; coordinated: 1.0 if the greedy levers agree; greedy_return: the
            greedy pair's payoff (payoff if coordinated, else 0); return: the exact self-play
            J; probability: the probability player A puts on `lever`.
        """
        theta = theta.detach().to(torch.float64)
        pi_a, pi_b = self.true_strategies(theta)
        lever, lever_b = int(pi_a.argmax()), int(pi_b.argmax())
        payoff = true_payoffs(self.levers)[lever].item()
        return {
            "lever": float(lever),
            "lever_b": float(lever_b),
            "payoff": payoff,
            "coordinated": float(lever == lever_b),
            "greedy_return": payoff if lever == lever_b else 0.0,
            "return": self.expected_payoff(theta).item(),
            "probability": pi_a[lever].item(),
        }

    def pure_point(self, lever_a: int, lever_b: int | None = None) -> Tensor:
        """Parameters of the deterministic strategies on SEEN levers lever_a (A), lever_b (B)."""
        theta = torch.zeros(2 * self.count, dtype=torch.float64)
        theta[lever_a] = 1.0
        theta[self.count + (lever_a if lever_b is None else lever_b)] = 1.0
        return theta

    def seen_label(self, true_lever: int) -> int:
        """The label under which this run sees `true_lever`."""
        return int(torch.nonzero(self.permutation == true_lever)[0, 0])

    def start_structure(self) -> list[tuple[float, int, str, dict[str, float]]]:
        """The Hessian's eigenvalues at the start, grouped (within 1e-9): (eigenvalue,
        multiplicity, "A+B" or "A-B" (the players move together or opposite), the share of the
        eigenvector's relative amplitude change on the 1.0 levers, the 0.8 pair and the 0.6
        lever, in true labels), ascending. The anchored scales come out as one group (2, 2)."""
        values, vectors = torch.linalg.eigh(hessian(self.loss)(self.start))
        n = self.count
        groups: list[tuple[float, int, str, dict[str, float]]] = []
        index = 0
        while index < len(values):
            end = index + 1
            while end < len(values) and values[end] - values[index] <= 1e-9:
                end += 1
            vector = vectors[:, index]
            together, apart = (vector[:n] + vector[n:]) / 2, (vector[:n] - vector[n:]) / 2
            kind, part = ("A+B", together) if together.norm() >= apart.norm() else ("A-B", apart)
            relative = to_true_labels(part / self.start[:n], self.permutation) ** 2
            total = relative.sum()
            shares = {
                "1.0": (relative[: self.levers].sum() / total).item(),
                "0.8": (relative[self.levers : self.levers + 2].sum() / total).item(),
                "0.6": (relative[-1] / total).item(),
            }
            groups.append((values[index].item(), end - index, kind, shares))
            index = end
        return groups

    def start_index(self) -> int:
        return sum(m for value, m, _, _ in self.start_structure() if value < -1e-9)

    def align(self, reference: Tensor, theta: Tensor) -> Tensor:
        """`theta`'s copy closest to `reference`: flipping the sign of any entry of x changes
        neither the strategy nor the loss, so each entry takes the reference's sign."""
        return torch.where(reference < 0, -theta.abs(), theta.abs())

    def problem(self) -> Problem:
        return Problem(
            f"lever-game-{self.levers}-s{self.seed}",
            self.loss,
            2 * self.count,
            self.start.clone(),
            align=self.align,
            behaviour=self.behaviour,
            ridge_policy="every-direction",  # the equal levers are distinct solutions
        )


def contested_amplitudes(payoffs: Tensor, entropy: float) -> Tensor:
    """sqrt(pi) at the symmetric critical point where every lever is on its contested branch.

    With s = sqrt(pi(i)), a symmetric interior critical point satisfies
    -r(i) s^2 + 3 e s = lam for every lever (the derivative of the loss in pi(i) is the same for
    all levers); the larger root s(i) = (3 e + sqrt(9 e^2 - 4 r(i) lam)) / (2 r(i)) decreases in
    lam, so lam is found by bisection on sum s(i)^2 = 1.

    Raises:
        ValueError: no such point exists for this entropy (too large).
    """
    c = 3 * entropy
    top = c * c / (4 * payoffs.max().item())

    def amplitudes(lam: float) -> Tensor:
        return (c + torch.sqrt((c * c - 4 * payoffs * lam).clamp(min=0))) / (2 * payoffs)

    if amplitudes(top).square().sum().item() > 1:
        raise ValueError(f"entropy={entropy!r} is too large: the symmetric start does not exist")
    low = -1.0
    while amplitudes(low).square().sum().item() < 1:
        low *= 2
    high = top
    for _ in range(200):
        middle = (low + high) / 2
        if amplitudes(middle).square().sum().item() > 1:
            low = middle
        else:
            high = middle
    amplitude = amplitudes((low + high) / 2)
    return amplitude / amplitude.norm()


def to_true_labels(values: Tensor, permutation: Tensor) -> Tensor:
    """Reorder per-lever values from a run's seen labels into true labels."""
    out = torch.empty_like(values)
    out[permutation.to(values.device)] = values
    return out


def cross_play(theta_a: Tensor, seed_a: int, theta_b: Tensor, seed_b: int) -> float:
    """Expected payoff when player A of run `seed_a` (parameters theta_a) meets player B of run
    `seed_b` (parameters theta_b), both mapped into true labels. The number of levers is read
    from the parameters' length (2N)."""
    n = _check_theta(theta_a)
    if _check_theta(theta_b) != n:
        raise ValueError("theta_a and theta_b must come from games with the same levers")
    pi_a = to_true_labels(strategy(theta_a[:n].detach().double()), relabelling(seed_a, n))
    pi_b = to_true_labels(strategy(theta_b[n:].detach().double()), relabelling(seed_b, n))
    return (pi_a * pi_b * true_payoffs(n - 3)).sum().item()


@declare(LEVERS, SEED, ENTROPY)
def lever_game(levers: int = 8, seed: int = 0, entropy: float = DEFAULT_ENTROPY) -> Problem:
    """The lever game as run `seed` sees it, as a Problem (see `LeverGame`, module docstring).

    Args:
        levers: how many levers pay 1.0, an integer in [2, 32].
        seed: the relabelling's seed, an integer in [0, 2**63 - 1].
        entropy: each player's Tsallis-entropy weight, in (0, 0.2).

    Raises:
        ValueError: a parameter is out of range (the message names it and the range).
    """
    return LeverGame.build(levers, seed, entropy).problem()
