"""gramsolve: natural-gradient directions for neural PDE solvers.

Solves the damped Gauss–Newton system `(JᵀJ + λI) d = Jᵀr`, in parameter space or in
residual space (`d = Jᵀ(JJᵀ + λI)⁻¹ r`), dense or matrix-free.
"""

import importlib.metadata

from . import pde as pde, problems as problems
from ._function_residual import FunctionResidual as FunctionResidual
from ._gramian import (
    ParameterGramian as ParameterGramian,
    ResidualGramian as ResidualGramian,
)
from ._jacobian import (
    JacobianOperator as JacobianOperator,
    JacobianTransposeOperator as JacobianTransposeOperator,
)
from ._metric import (
    AbstractMetric as AbstractMetric,
    DenseMetric as DenseMetric,
    DiagonalMetric as DiagonalMetric,
    InverseGram as InverseGram,
    metric_features as metric_features,
)
from ._point_residual import PointResidual as PointResidual
from ._residual import AbstractResidual as AbstractResidual
from ._residuals import Residuals as Residuals
from ._variational import VariationalResidual as VariationalResidual
from ._whitened import Whitened as Whitened


__version__ = importlib.metadata.version("gramsolve")

__all__ = [
    "AbstractMetric",
    "AbstractResidual",
    "DenseMetric",
    "DiagonalMetric",
    "FunctionResidual",
    "InverseGram",
    "JacobianOperator",
    "JacobianTransposeOperator",
    "ParameterGramian",
    "PointResidual",
    "ResidualGramian",
    "Residuals",
    "VariationalResidual",
    "Whitened",
    "metric_features",
    "pde",
    "problems",
]
