"""Benchmark PDE problems, set up as the source papers set them up, and their networks."""

from ._burgers import Burgers1D as Burgers1D
from ._fe_problem import AbstractFEProblem as AbstractFEProblem
from ._feinn_lshape import FEINNLShape as FEINNLShape
from ._feinn_variable2d import FEINNVariable2D as FEINNVariable2D
from ._heat1d import Heat1D as Heat1D
from ._heat4d import Heat4D as Heat4D
from ._helmholtz2d import Helmholtz2D as Helmholtz2D
from ._multiscale_poisson2d import MultiscalePoisson2D as MultiscalePoisson2D
from ._network import (
    MLP as MLP,
    PeriodicMLP as PeriodicMLP,
    SIREN as SIREN,
    split_model as split_model,
)
from ._poisson2d import Poisson2D as Poisson2D
from ._poisson5d import Poisson5D as Poisson5D
from ._poisson10d import Poisson10D as Poisson10D
from ._poisson100d import Poisson100D as Poisson100D
from ._problem import AbstractProblem as AbstractProblem
from ._published import PublishedResult as PublishedResult
from ._rvpinn_poisson1d import RVPINNPoisson1D as RVPINNPoisson1D
from ._unit_cube_poisson import AbstractUnitCubePoisson as AbstractUnitCubePoisson


__all__ = [
    "AbstractFEProblem",
    "AbstractProblem",
    "FEINNLShape",
    "FEINNVariable2D",
    "AbstractUnitCubePoisson",
    "Burgers1D",
    "Heat1D",
    "Heat4D",
    "Helmholtz2D",
    "MLP",
    "MultiscalePoisson2D",
    "PeriodicMLP",
    "Poisson2D",
    "Poisson5D",
    "Poisson10D",
    "Poisson100D",
    "PublishedResult",
    "RVPINNPoisson1D",
    "SIREN",
    "split_model",
]
