"""What training code may see of a chip: the ``OpticalChip`` protocol, and the simulator oracle.

A chip is programmed with commanded phases (radians) and optional amplitudes (transmission
in (0, 1]), then runs passes on batches. Every pass returns *measured* taps
(:class:`optics.core.taps.Taps`) on the chip's backend; a physical chip implements the same
methods with its modulator and camera drivers. ``NoiseFreeOracle`` is what only a simulator
can offer: the exact, noise-free passes through the optics it really has, for the
gradient-fidelity diagnostic (:func:`optics.core.ffm.true_gradient`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from optics.core.backend import Backend
from optics.core.detectors import Detectors
from optics.core.measurement import PassKey
from optics.core.taps import Taps


@runtime_checkable
class OpticalChip(Protocol):
    """What the trainers and the pipeline use; nothing else about a chip is visible.

    ``geometry`` is the chip's own description (a diffractive ``Geometry``; other systems
    carry theirs); the FFM step reads only ``backend``, ``detectors`` and ``amplitudes``.
    """

    geometry: object
    backend: Backend
    detectors: Detectors

    def program(self, phases: np.ndarray, amplitudes: np.ndarray | None = None) -> None: ...
    def data_pass(self, inputs, key: PassKey) -> Taps: ...
    def error_pass(self, error, key: PassKey, to_input: bool = False) -> Taps: ...
    def infer(self, inputs, key: PassKey): ...
    def describe(self) -> dict: ...


@runtime_checkable
class NoiseFreeOracle(Protocol):
    """Simulator-only: the exact passes through the system's actual (hidden) optics, no noise.

    ``true_data_pass(x)``: taps ``u_l``, output ``y = M x`` and ``|y|^2``; ``true_error_pass(e)``:
    the reverse-mode errors ``eps_l`` of ``M^T e`` (the transpose, not the forward-only pass).
    """

    backend: Backend

    def true_data_pass(self, inputs) -> Taps: ...
    def true_error_pass(self, error, to_input: bool = False) -> Taps: ...
