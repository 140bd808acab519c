"""Known critical points of the built-in problems (../shared/KNOWN-ANSWERS.md), for tests."""

from __future__ import annotations

import torch

HIMMELBLAU_MINIMA = torch.tensor(
    [[3.0, 2.0], [-2.805118, 3.131313], [-3.779310, -3.283186], [3.584428, -1.848127]],
    dtype=torch.float64,
)
HIMMELBLAU_SADDLES = torch.tensor(
    [[3.385154, 0.073852], [0.086678, 2.884255], [-3.073026, -0.081353], [-0.127961, -1.953715]],
    dtype=torch.float64,
)
# the two minima (rows of HIMMELBLAU_MINIMA) each saddle joins
HIMMELBLAU_SADDLE_MINIMA = ({0, 3}, {0, 1}, {1, 2}, {2, 3})
HIMMELBLAU_MAXIMUM = torch.tensor([-0.270845, -0.923039], dtype=torch.float64)
