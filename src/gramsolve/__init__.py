"""gramsolve: natural-gradient directions for neural PDE solvers.

Solves the damped Gauss–Newton system `(JᵀJ + λI) d = Jᵀr`, in parameter space or in
residual space (`d = Jᵀ(JJᵀ + λI)⁻¹ r`), dense or matrix-free.
"""

import importlib.metadata

from . import ngd as ngd, pde as pde, problems as problems
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
from ._regimes import (
    AbstractLowRankPreconditioner as AbstractLowRankPreconditioner,
    AbstractPreconditioner as AbstractPreconditioner,
    AbstractRegime as AbstractRegime,
    Auto as Auto,
    Dense as Dense,
    Iterative as Iterative,
    Jacobi as Jacobi,
    Nystrom as Nystrom,
    PivotedCholesky as PivotedCholesky,
    Plan as Plan,
    SketchSolve as SketchSolve,
)
from ._residual import AbstractResidual as AbstractResidual
from ._residuals import Residuals as Residuals
from ._solution import Solution as Solution
from ._solve import gramian_solve as gramian_solve, plan as plan, solve as solve


__version__ = importlib.metadata.version("gramsolve")

__all__ = [
    "AbstractLowRankPreconditioner",
    "AbstractPreconditioner",
    "AbstractRegime",
    "AbstractResidual",
    "Auto",
    "Dense",
    "Iterative",
    "Jacobi",
    "Nystrom",
    "PivotedCholesky",
    "Plan",
    "SketchSolve",
    "Solution",
    "gramian_solve",
    "plan",
    "solve",
    "FunctionResidual",
    "JacobianOperator",
    "JacobianTransposeOperator",
    "ParameterGramian",
    "PointResidual",
    "ResidualGramian",
    "Residuals",
    "ngd",
    "pde",
    "problems",
]
