"""Differential operators, quadrature rules and test spaces for pointwise and
weak-form residuals."""

from ._laplacian import (
    laplacian as laplacian,
    value_gradient_laplacian as value_gradient_laplacian,
)
from ._quadrature import (
    gauss_legendre as gauss_legendre,
    gauss_legendre_box as gauss_legendre_box,
    gauss_legendre_mesh as gauss_legendre_mesh,
    Quadrature as Quadrature,
)
from ._test_functions import (
    AbstractTestFunctions as AbstractTestFunctions,
    HatTestFunctions as HatTestFunctions,
    SineTestFunctions as SineTestFunctions,
    TabulatedTestFunctions as TabulatedTestFunctions,
)


__all__ = [
    "AbstractTestFunctions",
    "HatTestFunctions",
    "Quadrature",
    "SineTestFunctions",
    "TabulatedTestFunctions",
    "gauss_legendre",
    "gauss_legendre_box",
    "gauss_legendre_mesh",
    "laplacian",
    "value_gradient_laplacian",
]
