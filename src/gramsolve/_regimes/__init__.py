from ._auto import Auto as Auto, AutoState as AutoState, Plan as Plan
from ._base import AbstractRegime as AbstractRegime, Estimate as Estimate
from ._dense import Dense as Dense, DenseState as DenseState
from ._iterative import Iterative as Iterative, IterativeState as IterativeState
from ._preconditioners import (
    AbstractLowRankPreconditioner as AbstractLowRankPreconditioner,
    AbstractPreconditioner as AbstractPreconditioner,
    Jacobi as Jacobi,
    Nystrom as Nystrom,
    PivotedCholesky as PivotedCholesky,
)
from ._recycled import RecycledFactor as RecycledFactor
from ._sketch import SketchSolve as SketchSolve, SketchState as SketchState
from ._two_sided import (
    SketchedCore as SketchedCore,
    TwoSidedSketch as TwoSidedSketch,
    TwoSidedSketchState as TwoSidedSketchState,
)
