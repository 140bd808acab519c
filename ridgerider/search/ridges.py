"""The ridges of a branch point: its most negative eigenpairs, grouped, in a canonical basis.

At a symmetric saddle an eigenvalue repeats (once per interchangeable hidden unit), and the
eigensolver returns some orthonormal basis of its eigenspace: which one depends on rounding, so
on the CPU, the thread count and the seed. A mixture of symmetric copies is in general not a
direction that continues as a ridge (the eigenspace splits as soon as a ride breaks the
symmetry, and the tracked vector turns away from it at once). So every group of equal
eigenvalues is given a canonical basis that depends only on the eigenspace: greedily, the
projection of the coordinate axis the eigenspace holds most of (the lowest coordinate among
near-ties), then the same in what is left. On a network that axis is one weight of one hidden
unit, so the ridge is the direction carried by that one unit (fixed by every symmetry that
fixes the unit, hence it stays an eigenvector along the ride); on a separable function it is a
coordinate axis. A ridge's sign makes that coordinate positive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ridgerider.critical import CriticalPoint, hessian_norm
from ridgerider.linalg import HessianOperator, eigsh
from ridgerider.problems.base import Problem
from ridgerider.search.spec import SearchSpec

GROUP_RTOL = 1e-5  # eigenvalues this close (relative to the largest |value|) are one group
TIE_RTOL = 1e-3  # projections this close to the largest are ties, broken by coordinate
MIRROR_RTOL = 1e-9  # two first steps this close once aligned are copies (rounding apart)
SPECTRUM_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@dataclass(frozen=True)
class Spectrum:
    """The most negative eigenpairs at a point (values float64 ascending, on the CPU; vectors
    n x k on the problem's device, each group of equal values in its canonical basis), an
    estimate of ||H||, whether the last group may continue past the k computed, and the HVPs
    they cost."""

    values: Tensor
    vectors: Tensor
    norm_estimate: float
    hvps: int
    truncated: bool = False


@dataclass(frozen=True)
class Ridge:
    """One ride to take: from `node`, along eigenvector `eigen_index` with `sign`; with the
    eigenvectors of the nearest other eigenvalues (to track it) and an estimate of ||H||."""

    node: int
    eigen_index: int
    sign: int
    eigenvalue: float
    direction: Tensor
    neighbours: Tensor
    norm_estimate: float


def ridge_policy(problem: Problem, spec: SearchSpec) -> str:
    """The spec's ridge policy with "auto" resolved for `problem` (`Problem.ridge_policy`)."""
    if spec.ridge_policy != "auto":
        return spec.ridge_policy
    if problem.ridge_policy is not None:
        return problem.ridge_policy
    return "one-per-group" if problem.align else "every-direction"


def spectrum_size(problem: Problem, point: CriticalPoint, spec: SearchSpec) -> int:
    """How many eigenpairs to compute: enough for `ridges_per_node` groups of equal eigenvalues
    (one group per ridge under "one-per-group") and one more, to see whether the last group is
    whole; all the negative ones where fewer; and enough to track a ride."""
    per_group = 1 if ridge_policy(problem, spec) == "every-direction" else group_size(point)
    wanted = spec.ridges_per_node * per_group + 1
    k = min(point.index + 1, wanted) if point.index_is_exact else wanted
    return min(max(k, spec.ride_config().track), problem.dim)


def node_spectrum(
    problem: Problem,
    point: CriticalPoint,
    spec: SearchSpec,
    v0: Tensor | None = None,
    theta: Tensor | None = None,
) -> Spectrum:
    """The eigenpairs at `theta` (default: the point's own) that a branch point's ridges are
    chosen from: `spectrum_size` of them for `point`, warm started from `v0` where given."""
    k = spectrum_size(problem, point, spec)
    return spectrum_at(problem, point.theta if theta is None else theta, k, spec.seed, v0)


def spectrum_at(
    problem: Problem, theta: Tensor, k: int, seed: int = 0, v0: Tensor | None = None
) -> Spectrum:
    """The `k` most negative eigenpairs at `theta`, every group of equal eigenvalues in its
    canonical basis, and an estimate of ||H||."""
    op = HessianOperator(problem.loss, theta)
    tol = SPECTRUM_TOL.get(op.dtype, 1e-5)
    result = eigsh(op, k, "SA", tol=tol, v0=v0, seed=seed)
    values = result.eigenvalues.cpu()
    norm_estimate, norm_hvps = hessian_norm(op, result, problem.dim, 1e-2, seed)
    hvps = result.info.matvecs + norm_hvps
    groups = equal_groups(values, norm_estimate)
    truncated = k < problem.dim and len(groups[-1]) > 1
    vectors = result.eigenvectors.clone()
    for group in groups:
        if len(group) > 1:
            vectors[:, group] = canonical_basis(vectors[:, group])
    return Spectrum(values, vectors, norm_estimate, hvps, truncated)


def negative_spectrum(
    problem: Problem, theta: Tensor, spectrum: Spectrum, zero_tol: float, seed: int = 0
) -> Spectrum:
    """`spectrum` (at `theta`), grown until it holds every negative eigenvalue: twice as many
    pairs at a time, warm started from the last; its `hvps` count every solve."""
    hvps = spectrum.hvps
    while spectrum.values[-1] < -zero_tol * max(spectrum.norm_estimate, 1.0):
        k = len(spectrum.values)
        if k == problem.dim:
            break
        spectrum = spectrum_at(problem, theta, min(2 * k, problem.dim), seed, spectrum.vectors)
        hvps += spectrum.hvps
    return replace(spectrum, hvps=hvps)


def equal_groups(values: Tensor, scale: float) -> list[list[int]]:
    """Indices of ascending `values` in runs of equal eigenvalues (to GROUP_RTOL * scale)."""
    groups: list[list[int]] = []
    for index, value in enumerate(values.tolist()):
        if groups and value - values[groups[-1][0]].item() <= GROUP_RTOL * scale:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def canonical_basis(vectors: Tensor) -> Tensor:
    """An orthonormal basis of the span of the orthonormal columns of `vectors` that depends only
    on that span (see the module doc): greedily the normalised projection of the coordinate axis
    with the largest projection, the lowest such coordinate among ties, made positive there."""
    E = vectors.detach().to(torch.float64).cpu().numpy().copy()
    basis = np.empty_like(E)
    for column in range(E.shape[1]):
        weights = np.einsum("ij,ij->i", E, E)
        coordinate = int(np.flatnonzero(weights >= (1 - TIE_RTOL) * weights.max())[0])
        a = E[coordinate] / np.linalg.norm(E[coordinate])
        basis[:, column] = E @ a
        # what is left of the span: E E^T loses the new basis vector's projector, a rank-one
        # projection in E's coefficients (a group of m vectors costs O(n m^2), not a QR each)
        E -= np.outer(basis[:, column], a)
    return torch.from_numpy(basis).to(vectors)


def group_size(point: CriticalPoint) -> int:
    """Copies of the most negative eigenvalue among those classify computed (at least 1)."""
    values = point.eigenvalues
    return int(((values - values[0]).abs() <= GROUP_RTOL * values.abs().max()).sum())


def choose_ridges(
    problem: Problem, spectrum: Spectrum, spec: SearchSpec, zero_tol: float, gradient: Tensor
) -> list[tuple[int, int]]:
    """(eigen index, sign) of every ride to take, in order: the negative eigenvalues (below
    -zero_tol * ||H||), at most `ridges_per_node` of them (one per group of equal values under
    "one-per-group", so that symmetric copies are ridden once; never a group that may continue
    past the computed ones), each in every direction whose first step lowers the loss (both at
    a critical point; at a branch point, which is none, the gradient may rule one out)."""
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    if spectrum.truncated and len(groups) > 1:
        groups = groups[:-1]
    chosen = _negative_directions(problem, spectrum, spec, zero_tol, groups)
    slopes = (gradient @ spectrum.vectors).to(torch.float64).cpu()
    step = spec.step_size
    return [
        (index, sign)
        for index in chosen[: spec.ridges_per_node]
        for sign in (1, -1)
        if sign * step * slopes[index] + 0.5 * spectrum.values[index] * step**2 < 0
    ]


def ridges_capped(problem: Problem, spectrum: Spectrum, spec: SearchSpec, zero_tol: float) -> bool:
    """Whether `ridges_per_node` left a ridge of `spectrum`'s point unridden: more negative
    directions (one per group under "one-per-group") than the cap, or negative curvature in
    the last eigenpair computed, which the cap sized, so that more may lie beyond it."""
    groups = equal_groups(spectrum.values, spectrum.norm_estimate)
    negative = -zero_tol * max(spectrum.norm_estimate, 1.0)
    beyond = len(spectrum.values) < problem.dim and spectrum.values[-1].item() < negative
    chosen = _negative_directions(problem, spectrum, spec, zero_tol, groups)
    return beyond or len(chosen) > spec.ridges_per_node


def _negative_directions(
    problem: Problem, spectrum: Spectrum, spec: SearchSpec, zero_tol: float, groups: list[list[int]]
) -> list[int]:
    """The eigen indices of `groups` with negative eigenvalues that the ridge policy rides (one
    per group under "one-per-group"), most negative first."""
    every = ridge_policy(problem, spec) == "every-direction"
    negative = -zero_tol * max(spectrum.norm_estimate, 1.0)
    return [
        index
        for group in groups
        if spectrum.values[group[0]] < negative
        for index in (group if every else group[:1])
    ]


def drop_mirrored(
    problem: Problem, theta: Tensor, spectrum: Spectrum, rides: list[tuple[int, int]], step: float
) -> list[tuple[int, int]]:
    """`rides` without the - ride of each ridge whose first steps both ways are symmetric
    copies of each other (`Problem.align`): at a point that a symmetry fixes while it flips the
    ridge (a tree-MDP policy at a deterministic end, where theta and pi - theta are one policy),
    the two rides reach copies, and the second would be ridden for nothing."""
    if problem.align is None:
        return rides
    tol = MIRROR_RTOL * (1 + theta.norm().item())
    kept = []
    for index, sign in rides:
        if sign < 0 and (index, 1) in rides:
            ahead = theta + step * spectrum.vectors[:, index]
            behind = problem.align(ahead, theta - step * spectrum.vectors[:, index])
            if (behind - ahead).norm().item() <= tol:
                continue
        kept.append((index, sign))
    return kept


def orient(spectrum: Spectrum, gradient: Tensor, step_size: float) -> Spectrum:
    """`spectrum` with each eigenvector that the gradient tilts (by more than a thousandth of
    what its curvature changes the loss over one ride step) pointing downhill, so that a ride's
    + sign descends; at a critical point the canonical signs stay."""
    slopes = gradient @ spectrum.vectors
    curvature = 0.5 * spectrum.values.abs().to(slopes) * step_size
    flip = (slopes > 1e-3 * curvature).to(slopes.dtype)
    vectors = spectrum.vectors * (1 - 2 * flip)
    return replace(spectrum, vectors=vectors)


def make_ridge(node: int, spectrum: Spectrum, eigen_index: int, sign: int, track: int) -> Ridge:
    """The ride along eigenvector `eigen_index` with `sign`, with the `track - 1` eigenvectors
    whose eigenvalues are nearest its own as neighbours to track it by."""
    values = spectrum.values
    nearest = [
        j
        for j in torch.argsort((values - values[eigen_index]).abs(), stable=True).tolist()
        if j != eigen_index
    ]
    neighbours = spectrum.vectors[:, nearest[: track - 1]]
    direction = sign * spectrum.vectors[:, eigen_index]
    value = values[eigen_index].item()
    return Ridge(node, eigen_index, sign, value, direction, neighbours, spectrum.norm_estimate)
