"""A simulated rig: the physics of an emulated rig in a simulated chip, without instruments.

``chip=rig_sim`` is the simulated counterpart of ``chip=rig``: the same one-hop,
time-multiplexed optics (every layer through the hop a one-layer chip of the same seed
draws; :class:`~optics.diffractive.imperfections.HardwareSpec` ``time_multiplexed``), the
input loaded straight onto the first layer (no input hop, no illumination envelope), and the
measure-and-reload measurement model (:mod:`optics.diffractive.reload`), with the camera noise
of the simulated chips instead of frames. An emulated rig with the same chip seed and level
has exactly these hidden imperfections, so the two train side by side.
"""

from __future__ import annotations

from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.imperfections import HardwareSpec
from pipeline.chips.base import Design
from pipeline.chips.diffractive import Diffractive


class SimulatedRig(Diffractive):
    kind = "rig_sim"
    topologies = ("single", "data_parallel")
    calibrates_registration = False  # a rig calibrates itself; its simulated twin has nothing to calibrate

    def design(self, knobs, n_classes: int, n_features: int) -> Design:
        base = super().design(knobs, n_classes, n_features)
        hardware = {**base.hardware_base, "time_multiplexed": True}
        return Design(base.geometry, HardwareSpec, hardware, {"model": "reload", **base.camera_base})

    def max_stages(self, knobs) -> int:
        return 1

    def make_chips(self, spec, backend, relay_input: bool = False) -> tuple:
        g, act = spec.geometry, spec.activation
        chip = SimulatedChip(g, spec.hardware, spec.measurement, spec.seed, backend(), relay_input=True, activation=act)
        return chip, DigitalTwin(g, backend(), relay_input=True, activation=act)
