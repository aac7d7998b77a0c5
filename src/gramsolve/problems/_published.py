"""Results the source papers report on a benchmark problem, kept beside the problem."""

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class PublishedResult:
    """One final error a source paper reports for one optimizer on one problem.

    Read from the paper's public experiment repository (the best run of a
    hyperparameter sweep, its last logged value), not from a figure.

    **Arguments:**

    - `optimizer`: the method as the paper names it (`"ENGD"`, `"ENGD-W"`, `"SPRING"`,
      `"KFAC"`, `"KFAC*"` for KFAC with its automatic learning rate, `"Adam"`, ...).
    - `error`: the final error.
    - `metric`: `"rms"` for the absolute RMS error $\\sqrt{\\mathrm{mean}(u_\\theta -
      u^*)^2}$ over the evaluation points (what the KFAC and Woodbury/SPRING code logs
      as "l2_error"), `"relative_l2"` for $\\|u_\\theta - u^*\\| / \\|u^*\\|$.
    - `hidden`: the hidden widths of the tanh MLP of that run.
    - `seconds`: the wall-time budget of the run.
    - `steps`: the optimizer steps taken within the budget.
    - `points`: the collocation points of the run, in words.
    - `hardware`: what it ran on.
    - `source`: paper and repository file the number was read from.
    - `settings`: the tuned hyperparameters of that run, in words.
    """

    optimizer: str
    error: float
    metric: Literal["rms", "relative_l2"]
    hidden: tuple[int, ...]
    seconds: float
    steps: int | None
    points: str
    hardware: str
    source: str
    settings: str = ""

    def __post_init__(self):
        if self.metric not in ("rms", "relative_l2"):
            raise ValueError(
                f"PublishedResult: metric must be 'rms' or 'relative_l2', got "
                f"{self.metric!r}"
            )
        if not self.error >= 0:
            raise ValueError(f"PublishedResult: error must be >= 0, got {self.error}")
