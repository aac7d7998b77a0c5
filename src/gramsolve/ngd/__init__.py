"""Natural-gradient building blocks and optimizers for custom training loops."""

from ._base import AbstractOptimizer as AbstractOptimizer, NGDState as NGDState
from ._checkpoint import (
    load_checkpoint as load_checkpoint,
    save_checkpoint as save_checkpoint,
)
from ._class_weights import AdaptiveClassWeights as AdaptiveClassWeights
from ._damping import (
    AbstractDamping as AbstractDamping,
    ConstantDamping as ConstantDamping,
    LevenbergMarquardtDamping as LevenbergMarquardtDamping,
    LossScaledDamping as LossScaledDamping,
)
from ._defaults import default_optimizers as default_optimizers
from ._directions import (
    geodesic_acceleration as geodesic_acceleration,
    natural_gradient as natural_gradient,
    second_directional_derivative as second_directional_derivative,
    spring_direction as spring_direction,
)
from ._dngd import DNGD as DNGD
from ._engd import ENGD as ENGD
from ._line_search import (
    AbstractLineSearch as AbstractLineSearch,
    ArmijoLineSearch as ArmijoLineSearch,
    ConstantStepSize as ConstantStepSize,
    GridLineSearch as GridLineSearch,
)
from ._optax import (
    Adam as Adam,
    LBFGS as LBFGS,
    Optax as Optax,
    OptaxState as OptaxState,
)
from ._precision import (
    cast_floating as cast_floating,
    PrecisionSchedule as PrecisionSchedule,
    PrecisionScheduleState as PrecisionScheduleState,
)
from ._sketchy import SketchyNGD as SketchyNGD
from ._spring import SPRING as SPRING
from ._train import History as History, summary as summary, train as train
from ._trust_region import (
    secular_dampings as secular_dampings,
    TrustRegion as TrustRegion,
    TrustRegionState as TrustRegionState,
)
