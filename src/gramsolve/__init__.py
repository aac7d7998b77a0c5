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
from ._point_residual import PointResidual as PointResidual
from ._residual import AbstractResidual as AbstractResidual
from ._residuals import Residuals as Residuals


__version__ = importlib.metadata.version("gramsolve")

__all__ = [
    "AbstractResidual",
    "FunctionResidual",
    "JacobianOperator",
    "JacobianTransposeOperator",
    "ParameterGramian",
    "PointResidual",
    "ResidualGramian",
    "Residuals",
    "pde",
    "problems",
]
