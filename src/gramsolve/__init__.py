"""gramsolve: natural-gradient directions for neural PDE solvers.

Solves the damped Gauss–Newton system `(JᵀJ + λI) d = Jᵀr`, in parameter space or in
residual space (`d = Jᵀ(JJᵀ + λI)⁻¹ r`), dense or matrix-free.
"""

import importlib.metadata

from . import pde as pde, problems as problems
from ._cg import CG as CG
from ._function_residual import FunctionResidual as FunctionResidual
from ._gramian import (
    ParameterGramian as ParameterGramian,
    ResidualGramian as ResidualGramian,
)
from ._jacobian import (
    JacobianOperator as JacobianOperator,
    JacobianTransposeOperator as JacobianTransposeOperator,
)
from ._lowrank import LowRank as LowRank
from ._minres import MINRES as MINRES
from ._nystrom import adaptive_nystrom as adaptive_nystrom, nystrom as nystrom
from ._pivoted_cholesky import pivoted_cholesky as pivoted_cholesky
from ._point_residual import PointResidual as PointResidual
from ._preconditioner import (
    JacobiPreconditioner as JacobiPreconditioner,
    NystromPreconditioner as NystromPreconditioner,
)
from ._residual import AbstractResidual as AbstractResidual
from ._residuals import Residuals as Residuals


__version__ = importlib.metadata.version("gramsolve")

__all__ = [
    "AbstractResidual",
    "CG",
    "FunctionResidual",
    "JacobiPreconditioner",
    "JacobianOperator",
    "JacobianTransposeOperator",
    "LowRank",
    "MINRES",
    "NystromPreconditioner",
    "ParameterGramian",
    "PointResidual",
    "ResidualGramian",
    "Residuals",
    "adaptive_nystrom",
    "nystrom",
    "pde",
    "pivoted_cholesky",
    "problems",
]
