"""Benchmark PDE problems, set up as the source papers set them up, and their networks."""

from ._network import MLP as MLP, split_model as split_model
from ._poisson import Poisson2D as Poisson2D
from ._problem import AbstractProblem as AbstractProblem
