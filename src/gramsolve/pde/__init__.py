"""Differential operators for pointwise residuals."""

from ._laplacian import (
    laplacian as laplacian,
    value_gradient_laplacian as value_gradient_laplacian,
)
