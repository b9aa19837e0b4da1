"""ffm-optics physics: diffractive chips, hidden imperfections, FFM gradients (NumPy or CuPy).

Public entry points are re-exported here; see each module for the equations.
"""

from optics.core.backend import Backend, get_backend, gpu_available
from optics.core.chip import NoiseFreeOracle, OpticalChip
from optics.core.ffm import Objective, forward_only_step, gradient_fidelity, measure_fidelity, true_gradient
from optics.core.measurement import MeasurementSpec, PassKey
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "DigitalTwin",
    "Geometry",
    "HardwareSpec",
    "MeasurementSpec",
    "NoiseFreeOracle",
    "Objective",
    "OpticalChip",
    "PassKey",
    "SimulatedChip",
    "forward_only_step",
    "get_backend",
    "gpu_available",
    "gradient_fidelity",
    "measure_fidelity",
    "true_gradient",
    "__version__",
]
