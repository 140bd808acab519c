"""Curvature linear algebra: Hessian-vector product operators and a Lanczos eigensolver."""

from ridgerider.linalg.blocks import NonFiniteProductError
from ridgerider.linalg.estimators import TraceEstimate, hutchinson_trace, top_eigenvalue
from ridgerider.linalg.lanczos import (
    ConvergenceWarning,
    EigshInfo,
    EigshResult,
    eigsh,
)
from ridgerider.linalg.operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    as_operator,
    gradient_and_hessian,
)

__all__ = [
    "ConvergenceWarning",
    "DenseOperator",
    "EigshInfo",
    "EigshResult",
    "HessianOperator",
    "LinearOperator",
    "NonFiniteProductError",
    "TraceEstimate",
    "as_operator",
    "eigsh",
    "gradient_and_hessian",
    "hutchinson_trace",
    "top_eigenvalue",
]
