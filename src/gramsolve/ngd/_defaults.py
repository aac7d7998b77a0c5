"""Every optimizer of `gs.ngd` with its library defaults, by name."""

from ._base import AbstractOptimizer
from ._dngd import DNGD
from ._engd import ENGD
from ._optax import Adam, LBFGS
from ._sketchy import SketchyNGD
from ._spring import SPRING


def default_optimizers() -> dict[str, AbstractOptimizer]:
    """Every optimizer in `gs.ngd` with its library defaults, nothing tuned: the
    natural-gradient ones (`"ENGD"`, `"DNGD"`, `"SPRING"`, `"SketchyNGD"`) and the
    baselines (`"Adam"`, `"L-BFGS"`). The demo, the bench command and the benchmark
    scripts compare exactly these.

    **Arguments:**

    None.

    **Returns:** a dict from name to optimizer, in that order.

    !!! Example

        ```python
        for name, optimizer in gs.ngd.default_optimizers().items():
            params, history = gs.ngd.train(optimizer, residuals, params0, seconds=10)
        ```
    """
    return {
        "ENGD": ENGD(),
        "DNGD": DNGD(),
        "SPRING": SPRING(),
        "SketchyNGD": SketchyNGD(),
        "Adam": Adam(),
        "L-BFGS": LBFGS(),
    }
