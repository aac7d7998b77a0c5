"""gramsolve: natural-gradient directions for neural PDE solvers.

Solves the damped Gauss–Newton system `(JᵀJ + λI) d = Jᵀr`, in parameter space or in
residual space (`d = Jᵀ(JJᵀ + λI)⁻¹ r`), dense or matrix-free.
"""

import importlib.metadata

# `_blas_threads` first: it sets OpenBLAS's threads before anything loads OpenBLAS.
from . import (
    _blas_threads,  # noqa: F401
    ngd as ngd,
    pde as pde,
    problems as problems,
)
from ._cg import CG as CG
from ._cosine_sketch import SubsampledCosineSketch as SubsampledCosineSketch
from ._count_sketch import CountSketch as CountSketch
from ._effective_dimension import (
    effective_dimension as effective_dimension,
    EffectiveDimension as EffectiveDimension,
)
from ._feinn import FEInterpolatedResidual as FEInterpolatedResidual
from ._function_residual import FunctionResidual as FunctionResidual
from ._gramian import (
    ParameterGramian as ParameterGramian,
    ResidualGramian as ResidualGramian,
)
from ._jacobian import (
    JacobianOperator as JacobianOperator,
    JacobianTransposeOperator as JacobianTransposeOperator,
)
from ._least_squares import (
    LeastSquaresSolver as LeastSquaresSolver,
    LeastSquaresState as LeastSquaresState,
)
from ._lowrank import LowRank as LowRank
from ._materialised_jacobian import MaterialisedJacobian as MaterialisedJacobian
from ._metric import (
    AbstractMetric as AbstractMetric,
    DenseMetric as DenseMetric,
    DiagonalMetric as DiagonalMetric,
    InverseGram as InverseGram,
    metric_features as metric_features,
)
from ._minres import MINRES as MINRES
from ._nystrom import (
    adaptive_nystrom as adaptive_nystrom,
    nystrom as nystrom,
)
from ._pivoted_cholesky import pivoted_cholesky as pivoted_cholesky
from ._point_residual import PointResidual as PointResidual
from ._preconditioner import (
    JacobiPreconditioner as JacobiPreconditioner,
    NystromPreconditioner as NystromPreconditioner,
)
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
    RecycledFactor as RecycledFactor,
    SketchedCore as SketchedCore,
    SketchSolve as SketchSolve,
    TwoSidedSketch as TwoSidedSketch,
)
from ._residual import AbstractResidual as AbstractResidual
from ._residual_function import residual_function as residual_function
from ._residuals import Residuals as Residuals
from ._sharding import shard_points as shard_points
from ._solution import Solution as Solution
from ._solve import (
    gramian_solve as gramian_solve,
    plan as plan,
    solve as solve,
)
from ._variational import VariationalResidual as VariationalResidual
from ._whitened import Whitened as Whitened


__version__ = importlib.metadata.version("gramsolve")

__all__ = [
    "AbstractLowRankPreconditioner",
    "AbstractMetric",
    "AbstractPreconditioner",
    "AbstractRegime",
    "AbstractResidual",
    "Auto",
    "CG",
    "CountSketch",
    "Dense",
    "DenseMetric",
    "DiagonalMetric",
    "EffectiveDimension",
    "FEInterpolatedResidual",
    "FunctionResidual",
    "InverseGram",
    "Iterative",
    "Jacobi",
    "JacobiPreconditioner",
    "JacobianOperator",
    "MaterialisedJacobian",
    "JacobianTransposeOperator",
    "LowRank",
    "MINRES",
    "Nystrom",
    "NystromPreconditioner",
    "ParameterGramian",
    "PivotedCholesky",
    "Plan",
    "PointResidual",
    "ResidualGramian",
    "Residuals",
    "SketchSolve",
    "SketchedCore",
    "Solution",
    "SubsampledCosineSketch",
    "TwoSidedSketch",
    "VariationalResidual",
    "Whitened",
    "adaptive_nystrom",
    "effective_dimension",
    "gramian_solve",
    "metric_features",
    "ngd",
    "nystrom",
    "pde",
    "pivoted_cholesky",
    "plan",
    "problems",
    "shard_points",
    "solve",
]
