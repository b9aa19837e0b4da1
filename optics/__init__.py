"""ffm-optics physics: diffractive chips, hidden imperfections, FFM gradients (NumPy or CuPy).

Public entry points are re-exported here; see each module for the equations.
"""

from .backend import Backend, get_backend, gpu_available
from .chip import DigitalTwin, OpticalChip, SimulatedChip
from .ffm import Objective, forward_only_step, gradient_fidelity, measure_fidelity, true_gradient
from .geometry import Geometry
from .imperfections import HardwareSpec
from .measurement import MeasurementSpec, PassKey

__version__ = "0.1.0"

__all__ = ["Backend", "DigitalTwin", "Geometry", "HardwareSpec", "MeasurementSpec", "Objective",
           "OpticalChip", "PassKey", "SimulatedChip", "forward_only_step", "get_backend",
           "gpu_available", "gradient_fidelity", "measure_fidelity", "true_gradient", "__version__"]
