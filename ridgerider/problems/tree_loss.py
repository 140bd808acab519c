"""The tree MDP's loss with its exact gradient and Hessian, in closed form (`linalg.exact`).

With a_k(l) the probability of the action taken at level k on the path to leaf l, a_k = (1 +
sigma sin theta_s) / 2 (sigma = +1 right, -1 left, s the state there), the expected return is
J = sum_l r_l prod_k a_k(l). Each term is a product over the path, so

    dJ/dtheta_s = sum over leaves l below s of r_l a'_k(l) prod_{j != k} a_j(l),
    d2J/dtheta_s dtheta_t = sum over leaves below both of r_l a'_k a'_m prod_{j != k, m} a_j
        (s, t at levels k != m of one path), and of r_l a''_k prod_{j != k} a_j where s = t,

with a' = sigma cos / 2 and a'' = -sigma sin / 2; the products leave factors out instead of
dividing by them (a deterministic policy has a_j = 0): the path's products before and after
level k for the gradient, and every product without two levels for the Hessian. States on no
common path never meet in one term: the Hessian is zero there. The entropy H = sum cos^2(theta)
/ 2 has gradient -sin(2 theta) / 2 and Hessian diag(-cos(2 theta)); the loss is -(J + entropy *
H). Computed in numpy, float64: a few array operations in all, each of which costs numpy a
third of what it costs torch on arrays this small (`python bench/exact_derivatives.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class TreeLoss:
    """`value` (the loss -(J + entropy * H) as `TreeMDP.loss` computes it) with its exact
    derivatives. Build it with `TreeLoss.build`."""

    value: Callable[[Tensor], Tensor]
    rewards: np.ndarray  # (leaves,)
    entropy: float
    states: int
    path_states: np.ndarray  # (leaves, depth): the state at each level of a leaf's path
    path_sides: np.ndarray  # (leaves, depth): +1 where the path goes right there, -1 left
    upper: np.ndarray  # (depth, depth): [k, m] = k <= m
    same_level: np.ndarray  # (depth, depth): the identity
    pair_index: np.ndarray  # (leaves * depth * depth,): flat Hessian index of each (k, m) pair

    @classmethod
    def build(
        cls, value: Callable[[Tensor], Tensor], rewards: Tensor, entropy: float, depth: int
    ) -> TreeLoss:
        leaves = np.arange(2**depth)
        levels = np.arange(depth)
        # heap order: the state at level k on leaf l's path is 2^k - 1 + (l >> (depth - k))
        path_states = (2**levels - 1) + (leaves[:, None] >> (depth - levels))
        path_sides = ((leaves[:, None] >> (depth - 1 - levels)) & 1) * 2.0 - 1.0
        states = 2**depth - 1
        pair_index = (path_states[:, :, None] * states + path_states[:, None, :]).reshape(-1)
        return cls(
            value,
            rewards.detach().to(torch.float64).cpu().numpy(),
            float(entropy),
            states,
            path_states,
            path_sides,
            levels[:, None] <= levels[None, :],
            np.eye(depth, dtype=bool),
            pair_index,
        )

    def __call__(self, theta: Tensor) -> Tensor:
        return self.value(theta)

    def value_and_gradient(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and its gradient; `theta` of shape (..., states)."""
        x = _array(theta)
        points = x.reshape(-1, self.states)
        sine, cosine = np.sin(points), np.cos(points)
        action, slope = self._path_terms(sine, cosine)
        before, after = _before_after(action)
        expected = (before[..., -1] * action[..., -1]) @ self.rewards
        value = -(expected + self.entropy * (cosine**2).sum(-1) / 2)
        gradient = self._gradient(sine, cosine, slope * before * after)
        shape = x.shape[:-1]
        return _tensor(value.reshape(shape), theta), _tensor(gradient.reshape(x.shape), theta)

    def gradient_and_hessian(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """The gradient and the whole Hessian at one point (`theta` of shape (states,))."""
        x = _array(theta)
        sine, cosine = np.sin(x), np.cos(x)
        action, slope = self._path_terms(sine, cosine)
        without_two = _without_two(action, self.upper)
        without_one = np.diagonal(without_two, axis1=1, axis2=2)
        bend = -self.path_sides * sine[self.path_states] / 2
        pairs = (
            np.where(
                self.same_level,
                (bend * without_one)[:, :, None],
                slope[:, :, None] * slope[:, None, :] * without_two,
            )
            * self.rewards[:, None, None]
        )
        n = self.states
        hessian_j = np.bincount(self.pair_index, weights=pairs.ravel(), minlength=n * n)
        hessian = -hessian_j.reshape(n, n) + np.diag(self.entropy * np.cos(2 * x))
        gradient = self._gradient(sine, cosine, slope * without_one)
        return _tensor(gradient, theta), _tensor(hessian, theta)

    def _gradient(self, sine: np.ndarray, cosine: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """The loss's gradient from each leaf's and level's a'_k(l) prod_{j != k} a_j(l)
        (`terms`, of shape (points, leaves, depth) or (leaves, depth) for one point)."""
        weighted = (self.rewards[:, None] * terms).reshape(-1, self.path_states.size)
        points = weighted.shape[0]
        flat = (self.path_states.ravel() + self.states * np.arange(points)[:, None]).ravel()
        gradient_j = np.bincount(flat, weighted.ravel(), self.states * points)
        return -(gradient_j.reshape(sine.shape) - self.entropy * sine * cosine)

    def _path_terms(self, sine: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """a_k(l) and a'_k(l) for every leaf and level (a leading batch dimension kept)."""
        action = (1 + self.path_sides * sine[..., self.path_states]) / 2
        slope = self.path_sides * cosine[..., self.path_states] / 2
        return action, slope


def _before_after(action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The products of each path's factors (the last axis of `action`) before and after each
    level."""
    ones = np.ones((*action.shape[:-1], 1))
    before = np.cumprod(np.concatenate((ones, action[..., :-1]), -1), -1)
    after = np.cumprod(np.concatenate((ones, action[..., :0:-1]), -1), -1)[..., ::-1]
    return before, after


def _without_two(action: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """For each leaf (row of `action`, its path's factors a_j), the product of the factors
    without levels k and m, [leaf, k, m] (without k alone where k = m): the factors before the
    first, between the two, after the second; no division, since a factor may be 0."""
    leaves, depth = action.shape
    before, after = _before_after(action)
    between = np.ones((leaves, depth, depth))
    for gap in range(2, depth):
        first = np.arange(depth - gap)
        between[:, first, first + gap] = (
            between[:, first, first + gap - 1] * action[:, first + gap - 1]
        )
    ordered = before[:, :, None] * between * after[:, None, :]  # right for k <= m
    return np.where(upper, ordered, ordered.transpose(0, 2, 1))


def _array(theta: Tensor) -> np.ndarray:
    if theta.dtype == torch.float64 and theta.device.type == "cpu":
        return theta.detach().numpy()
    return theta.detach().to(device="cpu", dtype=torch.float64).numpy()


def _tensor(array: np.ndarray, like: Tensor) -> Tensor:
    tensor = torch.from_numpy(array if array.flags.c_contiguous else array.copy())
    if like.dtype == torch.float64 and like.device.type == "cpu":
        return tensor
    return tensor.to(device=like.device, dtype=like.dtype)
