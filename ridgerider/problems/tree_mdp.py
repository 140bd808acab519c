"""The Ridge Rider paper's tree-structured MDP: a binary tree of decisions, rewards at the leaves.

The agent makes `depth` binary decisions (left / right) from the root; the leaf it reaches pays
its reward. The policy is tabular (one parameter per internal state), the expected return J is
computed exactly (the product of the action probabilities along each root-to-leaf path, summed
against the rewards; vectorised, no sampling), and the searched loss is

    loss(theta) = -(J(theta) + entropy * H(theta)),   H = sum over states of 2 p_s (1 - p_s),

with p_s = (1 + sin theta_s) / 2 the probability of going right at state s. Everything here is
exact in float64 and infinitely differentiable; the start and the set of solutions are known in
closed form (see `TreeMDP`).

Design choices, and why (each was measured against the alternatives; see the module's tests):

* Policy: p_s = (1 + sin theta_s) / 2, i.e. pi(a|s) = x_a^2 for x = (cos phi, sin phi) on the
  unit circle (phi = theta / 2 + pi / 4): one parameter per state, no zero modes, and every
  policy -- deterministic ones included -- at a finite parameter (theta = +-pi/2). A sigmoid
  (softmax) policy reaches a deterministic policy only at infinite logits, and that breaks
  either the minima or the start. Measured (float64, dense Hessians): with entropy 0.05 a
  depth-3 minimum sits at logits near 60, where its Hessian eigenvalues are ~1e-26; with entropy
  0.3, Newton from the uniform policy found no critical point for about a quarter of the seeds
  at depths 3-6 and no saddle at depth 8; with 0.6 the nearest critical point was a minimum
  from depth 5. The cause is structural: a state at depth k is reached with probability 2^-k at
  a near-uniform start but 1 on a minimum's path, so with fixed per-state weights its logit
  there is 2^k times larger. Here a minimum is an exactly deterministic policy with O(1)
  curvature (the diagonal below), and J there is exactly the leaf's reward.
* Entropy: the Tsallis entropy of order 2 (Gini impurity) 1 - sum_a pi(a|s)^2 = 2 p (1 - p) =
  cos^2(theta) / 2, summed over states with equal weights (per state, not path-weighted).
  Shannon entropy has an infinite slope at deterministic policies, so with a parametrisation
  that reaches them the loss would not be twice differentiable there. Path weighting (each
  state's entropy weighted by its probability of being reached) is the soft-Bellman objective:
  with a softmax policy its only critical point is the soft-optimal policy (backward induction
  fixes each logit), a minimum -- no saddle, nothing to ride. Per-state weighting keeps the
  tree's many critical points.
* Reward law (`TreeMDP.build`): the leaves come in sibling pairs, one "winner" and one "loser"
  (which side is random), with a random gap; each pair is shifted so that, at the start, every
  pair -- hence every subtree -- is worth the same. That balance is what makes the
  maximum-entropy point an exact critical point (a uniform policy never is one: a pair with
  unequal rewards has a non-zero gradient there). With i.i.d. rewards, Newton from the uniform
  policy reached a saddle of this loss for only a minority of the seeds from depth 5 on
  (measured), so the start could not be computed reliably. Every positive leaf sits beside a
  negative one, and at the start no region of the tree looks better than another.

Notation: states are numbered level by level (heap order): state i at level k is
2^k - 1 + i, its children are states 2i and 2i + 1 of level k + 1; leaf index = the actions
taken read as a binary number, root first (0 = left, 1 = right); bottom state j decides between
leaves 2j and 2j + 1 (the "pair" j).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import hessian

from ridgerider.problems.base import Problem, check_critical_start
from ridgerider.problems.parameters import declare, integer, number
from ridgerider.problems.tree_loss import TreeLoss

DEPTH_RANGE = (4, 10)
GAP_SCALE = 2.0
DEPTH = integer("depth", *DEPTH_RANGE, "decisions per episode (2**depth leaves)")
SEED = integer("seed", 0, 2**59 - 1, "the leaf rewards' seed")
ENTROPY = number(
    "entropy",
    0.0,
    1.0,
    "the Tsallis entropy's weight; omitted: 2**(1 - depth)",
    open_low=True,
    nullable=True,
)
GAP_RANGE = (0.4, 0.9)


def default_entropy(depth: int) -> float:
    """2^(1 - depth): the entropy weight at which a pair's start position sin(theta) equals its
    gap / GAP_SCALE, between 0.4 and 0.9 (sensitive, yet not deterministic)."""
    return 2.0 ** (1 - depth)


def leaf_probabilities(theta: Tensor, depth: int) -> Tensor:
    """P(leaf) for every leaf: the product of the action probabilities along its path. Few
    tensor operations a level (both actions' probabilities stacked once): on a tree this small
    a Hessian costs what autograd's per-operation overhead does (bench/RESULTS.md)."""
    sine = torch.sin(theta)
    actions = torch.stack((1 - sine, 1 + sine), dim=-1) * 0.5  # (states, left / right)
    probs = actions[0]
    for level in range(1, depth):
        states = actions[2**level - 1 : 2 ** (level + 1) - 1]
        probs = (probs[:, None] * states).reshape(-1)
    return probs


@dataclass(frozen=True, eq=False)
class TreeMDP:
    """One tree: its rewards, the start (a saddle) and everything known about its minima.

    Build it with `TreeMDP.build(depth, seed, entropy)`; `problem()` gives the search's Problem.

    Reward law (drawn with `seed` and `depth`, float64): for each of the 2^(depth-1) pairs, the
    winner's side is left or right with probability 1/2 and the gap is GAP_SCALE * U(0.4, 0.9).
    With rho = 2^(1-depth) (the uniform policy's probability of reaching a bottom state) and
    tau = entropy, the winner's probability at the start is q = min(1, 1/2 + rho gap / (4 tau))
    and b = (q - 1/2) gap; the pair pays mid +- gap/2 with mid = c - b, where the common start
    value is c = -2 tau + min over pairs of b. So every pair is worth exactly c at the start.
    (At the default entropy q - 1/2 = gap / 4; measured over depths 4-10: winners pay 0.04 to
    0.41, losers -0.40 to -1.69.)

    Start (exact, closed form): every non-bottom state uniform (theta = 0), bottom state j at
    sin(theta_j) = +-(2 q_j - 1) towards its winner. All subtrees are worth c there, so each
    upper state's gradient vanishes; a bottom state is critical because sin(theta) =
    rho * (r_right - r_left) / (2 tau) (or it sits at a deterministic end, where cos(theta) = 0).
    It is checked to be critical (gradient norm <= 1e-10) and a saddle. Its index grows like
    0.6 * 2^(depth-1) at the default entropy (measured, seeds 0-19, 0-4 from depth 9: depth 4:
    3-5, 5: 7-11, 6: 16-22, 7: 34-41, 8: 69-82, 9: 144-159, 10: 300-314). An entropy
    from half to 1.5 times the default kept it a saddle on most trees (measured at depths 4, 6,
    8; the index peaks near 0.8 times the default; at 0.55 times, depth 4, seed 6 of 0-19 starts
    at a minimum); far from it the start is a minimum (ValueError).

    Critical points (exact): the gradient is cos(theta_s) (tau sin(theta_s) - c_s / 2), with c_s
    = dJ/dp_s = P(reach s) * (value right - value left). So s is critical either at a
    deterministic end (cos = 0: p_s in {0, 1}, any state) or at sin(theta_s) = c_s / (2 tau).

    Solutions (exact; `solutions()`): the positive-reward leaves. Every positive-reward leaf is
    a strict local minimum of the loss, and the greedy leaf of every local minimum is a winner;
    so "distinct positive-reward leaves that are greedy leaves of local minima" and "positive-
    reward leaves" are the same set, and its size is known exactly. Proof:
      1. At leaf l's deterministic point (`deterministic_point`: the path's states at theta =
         +-pi/2 towards l, every other state at theta = 0) the gradient is zero and the Hessian
         is diagonal -- a path state has cos = 0, so its row vanishes off the diagonal; two
         off-path states are never reached, so J has no term in both -- with entries
         adv_k / 2 - tau on the path (adv_k = r_l - mean reward of the subtree the other action
         leads to, which is played uniformly) and tau off it.
      2. Losers pay mid - gap/2 <= -2 tau - gap/2 < -2 tau, and every subtree of two or more
         leaves has mean reward c - mean(b) <= -2 tau. So for r_l > 0 every adv_k > 2 tau:
         a strict minimum, with J = r_l exactly.
      3. Losers are negative, so the positive leaves are winners. At any local minimum the
         greedy path reaches its bottom state with probability P >= 2^(1-depth) > 0; there the
         state is either deterministic towards the winner (towards the loser its curvature
         -P gap / 2 - tau is negative) or interior with sin(theta) = +-P gap / (2 tau), the
         sign of the winner's side: the greedy leaf is the winner either way.
    Other, mixed minima exist (measured: about half of the minima L-BFGS reaches from random
    points, e.g. a policy mixing two subtrees whose best leaves pay nearly the same); their
    greedy leaf is a winner all the same, so they change nothing above. `minimum_leaves()`
    gives every leaf whose deterministic point is a strict minimum, negative winners included.

    Depths: 4 to 10. Below 4 the entropy a saddle start needs is comparable to the rewards'
    margins: at depth 3, 25 of 40 seeds had no positive leaf at all. From depth 4 on there were
    2^(depth-1) solutions (one per pair) for every seed measured (0-19 at each depth); the
    count is not fixed by the law, so read it from `solutions()`.
    """

    depth: int
    seed: int
    entropy: float
    rewards: Tensor
    start: Tensor
    winners: Tensor = field(repr=False)

    @classmethod
    def build(cls, depth: int = 6, seed: int = 0, entropy: float | None = None) -> TreeMDP:
        """Draw the tree and compute its start; see the class docstring for the law.

        Args:
            depth: decisions per episode, an integer in [4, 10] (2^depth leaves).
            seed: the random seed of the rewards, an integer in [0, 2**59) (the generator is
                seeded with 16 * seed + depth).
            entropy: the weight tau of the Tsallis entropy, in (0, 1]; None for
                `default_entropy(depth)` = 2^(1 - depth).

        Raises:
            ValueError: a parameter is out of range, or (for a non-default entropy) the start it
                gives is not a saddle.
            RuntimeError: the start fails its criticality check (a bug, not a user error).
        """
        DEPTH.check(depth)
        SEED.check(seed)
        if entropy is None:
            entropy = default_entropy(depth)
        ENTROPY.check(entropy)
        tau = float(entropy)

        # depth is mixed in so that one seed's trees at different depths are not correlated
        generator = torch.Generator().manual_seed(16 * seed + depth)
        pairs = 2 ** (depth - 1)
        side = torch.randint(0, 2, (pairs,), generator=generator, dtype=torch.int64)
        low, high = GAP_RANGE
        unit = torch.rand(pairs, generator=generator, dtype=torch.float64)
        gap = GAP_SCALE * (low + (high - low) * unit)
        reach = 2.0 ** (1 - depth)
        win_prob = (0.5 + reach * gap / (4 * tau)).clamp(max=1.0)
        bonus = (win_prob - 0.5) * gap
        common = -2 * tau + bonus.min()
        mid = common - bonus
        winner, loser = mid + gap / 2, mid - gap / 2
        right_wins = side == 1
        rewards = torch.stack(
            [torch.where(right_wins, loser, winner), torch.where(right_wins, winner, loser)], 1
        ).reshape(-1)
        start = torch.zeros(2**depth - 1, dtype=torch.float64)
        sign = torch.where(right_wins, 1.0, -1.0).to(torch.float64)
        start[pairs - 1 :] = sign * torch.asin(2 * win_prob - 1)
        winners = 2 * torch.arange(pairs) + side

        tree = cls(depth, seed, tau, rewards, start, winners)
        check_critical_start(tree.loss, start, f"tree-mdp depth={depth} seed={seed}")
        if tree.start_index() == 0:
            raise ValueError(
                f"entropy={tau!r} makes the start of tree-mdp depth={depth} seed={seed} a "
                f"minimum, not a saddle; the default entropy for this depth is "
                f"{default_entropy(depth)!r}"
            )
        return tree

    @property
    def states(self) -> int:
        return 2**self.depth - 1

    @property
    def leaves(self) -> int:
        return 2**self.depth

    def policy(self, theta: Tensor) -> Tensor:
        """The probability of going right at each state."""
        return (1 + torch.sin(theta)) / 2

    def leaf_probabilities(self, theta: Tensor) -> Tensor:
        return leaf_probabilities(theta, self.depth)

    def expected_return(self, theta: Tensor) -> Tensor:
        """J: the exact expected reward of the policy theta."""
        return leaf_probabilities(theta, self.depth) @ self.rewards.to(theta)

    def tsallis_entropy(self, theta: Tensor) -> Tensor:
        """H: sum over states of 2 p (1 - p) = cos(theta)^2 / 2."""
        return (torch.cos(theta) ** 2).sum() / 2

    def loss(self, theta: Tensor) -> Tensor:
        """The searched loss -(J + entropy * H)."""
        return -(self.expected_return(theta) + self.entropy * self.tsallis_entropy(theta))

    def greedy_leaf(self, theta: Tensor) -> int:
        """The leaf the greedy policy reaches (right where p > 1/2; a tie goes left)."""
        right = (torch.sin(theta.detach()) > 0).tolist()
        leaf = 0
        for level in range(self.depth):
            leaf = 2 * leaf + int(right[2**level - 1 + leaf])
        return leaf

    def behaviour(self, theta: Tensor) -> dict[str, float]:
        """Behavioural metrics of a parameter vector.

        Returns:
            leaf: the greedy leaf's index; reward: its reward; return: the exact J;
            leaf_probability: the probability the policy reaches the greedy leaf (1 at a
            deterministic policy); solution: 1.0 if the greedy leaf is in `solutions()`.
        """
        theta = theta.detach().to(torch.float64)
        leaf = self.greedy_leaf(theta)
        return {
            "leaf": float(leaf),
            "reward": self.rewards[leaf].item(),
            "return": self.expected_return(theta).item(),
            "leaf_probability": self.leaf_probabilities(theta)[leaf].item(),
            "solution": float(leaf in self.solutions()),
        }

    def deterministic_point(self, leaf: int) -> Tensor:
        """The parameters of the deterministic policy to `leaf`: the path's states at +-pi/2,
        every other state uniform (theta = 0)."""
        if not 0 <= leaf < self.leaves:
            raise ValueError(f"leaf must be an integer in [0, {self.leaves - 1}], got {leaf!r}")
        theta = torch.zeros(self.states, dtype=torch.float64)
        for level in range(self.depth):
            state = 2**level - 1 + (leaf >> (self.depth - level))
            right = (leaf >> (self.depth - 1 - level)) & 1
            theta[state] = math.pi / 2 if right else -math.pi / 2
        return theta

    def advantages(self, leaf: int) -> Tensor:
        """adv_k for k = 0 (root) .. depth - 1: `leaf`'s reward minus the mean reward of the
        subtree the other action at the k-th state of its path leads to."""
        out = []
        for level in range(self.depth):
            size = 2 ** (self.depth - 1 - level)
            action = (leaf >> (self.depth - 1 - level)) & 1
            other = 2 * (leaf >> (self.depth - level)) + 1 - action
            out.append(self.rewards[leaf] - self.rewards[other * size : (other + 1) * size].mean())
        return torch.stack(out)

    def minimum_leaves(self) -> tuple[int, ...]:
        """Every leaf whose deterministic point is a strict local minimum (adv_k > 2 entropy on
        the whole path), negative winners included."""
        return tuple(
            leaf
            for leaf in range(self.leaves)
            if bool((self.advantages(leaf) > 2 * self.entropy).all())
        )

    def solutions(self) -> tuple[int, ...]:
        """The positive-reward leaves, ascending: exactly the distinct positive-reward greedy
        leaves of local minima (see the class docstring for the proof). Checked against the
        minimum criterion."""
        cached = self.__dict__.get("_solutions")
        if cached is not None:
            return cached
        positive = tuple(int(i) for i in torch.nonzero(self.rewards > 0).flatten())
        minima = set(self.minimum_leaves())
        if not set(positive) <= minima or not set(positive) <= set(self.winners.tolist()):
            raise RuntimeError("a positive leaf is not a strict minimum: the reward law is broken")
        object.__setattr__(self, "_solutions", positive)
        return positive

    def start_spectrum(self) -> Tensor:
        """The Hessian's eigenvalues at the start, ascending (dense: these trees are small)."""
        cached = self.__dict__.get("_start_spectrum")
        if cached is None:
            cached = torch.linalg.eigvalsh(hessian(self.loss)(self.start))
            object.__setattr__(self, "_start_spectrum", cached)
        return cached

    def start_index(self) -> int:
        """The number of negative eigenvalues at the start (relative tolerance 1e-9)."""
        spectrum = self.start_spectrum()
        return int((spectrum < -1e-9 * spectrum.abs().max()).sum())

    def align(self, reference: Tensor, theta: Tensor) -> Tensor:
        """`theta`'s copy closest to `reference`: theta_s and pi - theta_s (mod 2 pi) are the
        same policy, so each coordinate takes the representative nearest the reference's."""
        two_pi = 2 * math.pi
        candidates = torch.stack([theta, math.pi - theta])
        candidates = candidates + two_pi * torch.round((reference - candidates) / two_pi)
        pick = (candidates - reference).abs().argmin(0, keepdim=True)
        return candidates.gather(0, pick)[0]

    def problem(self) -> Problem:
        return Problem(
            f"tree-mdp-d{self.depth}-s{self.seed}",
            TreeLoss.build(self.loss, self.rewards, self.entropy, self.depth),
            self.states,
            self.start.clone(),
            align=self.align,
            behaviour=self.behaviour,
        )


@declare(DEPTH, SEED, ENTROPY)
def tree_mdp(depth: int = 6, seed: int = 0, entropy: float | None = None) -> Problem:
    """The tree-structured MDP as a Problem (see `TreeMDP` for the law, start and solutions).

    Args:
        depth: decisions per episode, an integer in [4, 10].
        seed: the rewards' seed, an integer in [0, 2**59).
        entropy: the Tsallis entropy's weight, in (0, 1]; None for 2^(1 - depth).

    Raises:
        ValueError: a parameter is out of range (the message names it and the range).
    """
    return TreeMDP.build(depth, seed, entropy).problem()
