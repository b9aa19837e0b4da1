"""Diffractive chips: the ideal ``DigitalTwin`` and a ``SimulatedChip`` (``OpticalChip``s, :mod:`optics.core.chip`).

A chip is programmed with commanded phases (radians, (L, n, n)) and optional amplitudes
(transmission in (0, 1], (L, n, n)), then runs passes on batches. Every pass returns
*measured* taps (:class:`optics.diffractive.Taps`), on the chip's backend. A physical chip
implements the same methods with its SLM and camera drivers.

The simulated chip's imperfections (:mod:`optics.diffractive.imperfections`) are private: training
code sees only what a camera would. ``reveal()`` hands them out for post-hoc analysis,
and ``true_gradient`` (a simulator-only oracle) gives the exact gradient with respect to
the phases the chip realises, for the gradient-fidelity diagnostic.

``activation`` (:mod:`optics.core.activations`): a digital function applied to the fields
arriving at layers 2..L, which needs measured layers to act between (a reload chip,
:mod:`optics.diffractive.reload`); its twin and oracle include it (:mod:`optics.diffractive.nonlinear`).
Each error pass crosses it at the points of the chip's latest data pass of the same kind.
"""

from __future__ import annotations

import numpy as np

from optics.core.activations import Activation, ActivationTrace
from optics.core.backend import Backend, get_backend
from optics.core.camera import Camera
from optics.core.measurement import (
    MeasurementSpec,
    PassKey,
    Tap,
    measure_field_,
    measure_intensity,
    reference_rotation,
)
from optics.core.propagation import Propagator, check_field, make_propagator
from optics.core.taps import Taps
from optics.diffractive import donn, nonlinear, reload
from optics.diffractive.detectors import make_detectors
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec, HiddenState, draw_hidden_state, shift_map, slm_response
from optics.diffractive.input_cache import InputPlaneCache


class _DiffractiveBase:
    """Shared programming and checks: builds transmissions from commanded parameters."""

    def __init__(
        self,
        geometry: Geometry,
        backend: Backend | None,
        props: list[Propagator | None],
        input_cache: int = 0,
        activation: Activation | None = None,
    ):
        self.geometry = geometry
        self.activation = activation if activation is not None and activation.active else None
        # the points of the latest data pass (measured or twin: "pass"; the oracle's: "true")
        self._traces = {k: ActivationTrace(self.activation) for k in ("pass", "true")} if self.activation else {}
        self.relay_input = props[0] is None
        self.backend = backend or get_backend()
        self.props = props
        self.detectors = make_detectors(geometry, self.backend)
        self.amplitudes = None
        self.transmissions = None
        shape = (geometry.n_layers, geometry.n, geometry.n)
        self.program(np.zeros(shape))
        if int(input_cache) < 0:
            raise ValueError(f"input_cache must be >= 0 samples, got {input_cache}")
        self._input_cache = (
            InputPlaneCache(int(input_cache), geometry.n, self.backend)
            if input_cache and not self.relay_input
            else None
        )

    def _data_pass(self, x, trace: ActivationTrace | None = None) -> Taps:
        """The data pass on prepared (complex, illuminated) inputs, ``P_0 x`` from the cache when it
        holds it; with ``trace``, through the activation (its points kept there)."""
        cache, first = self._input_cache, None
        if cache is not None:
            first, keys = cache.lookup(x)
            if first is None:
                first = donn.first_hop(x, self.props)
                cache.store(x, first, keys)
        if trace is not None:
            return nonlinear.data_pass(x, self.transmissions, self.props, trace, first=first)
        return donn.data_pass(x, self.transmissions, self.props, first=first)

    def _trace(self, kind: str = "pass") -> ActivationTrace | None:
        """The activation trace of ``kind`` ("pass", "true", or "once": a fresh one), None without an activation."""
        if self.activation is None:
            return None
        return self._traces[kind] if kind in self._traces else ActivationTrace(self.activation)

    def _exact_error_pass(self, error, to_input: bool, kind: str) -> Taps:
        """``P^T`` error pass through this object's optics (across the activation at the ``kind`` trace)."""
        return nonlinear.exact_error_pass(error, self.transmissions, self.props, self._trace(kind), to_input)

    def program(self, phases, amplitudes=None) -> None:
        """Write commanded phases (L, n, n) radians and optional amplitudes (L, n, n) in (0, 1]."""
        g = self.geometry
        shape = (g.n_layers, g.n, g.n)
        phases = self._checked("phases", phases, shape)
        amps = None if amplitudes is None else self._checked("amplitudes", amplitudes, shape)
        if amps is not None and (amps.min() <= 0 or amps.max() > 1):
            raise ValueError("amplitudes must lie in (0, 1]; clip them before programming")
        xp, cdt = self.backend.xp, self.backend.complex_dtype
        realised = self.realised_phases(phases)
        t = xp.exp(1j * realised).astype(cdt, copy=False)
        if amps is not None:
            t = t * amps.astype(self.backend.real_dtype)
        self.transmissions = t
        self.amplitudes = amps
        self._commanded = (phases, amps)

    def _checked(self, name: str, value, shape):
        arr = self.backend.asarray(value, dtype=self.backend.xp.float64)
        if tuple(arr.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(arr.shape)}, expected {shape}")
        check_field(name, arr, self.geometry.n)
        return arr

    def _inputs(self, inputs):
        x = self.backend.asarray(inputs)
        check_field("inputs", x, self.geometry.n)
        if x.ndim != 3:
            raise ValueError(f"inputs has shape {tuple(x.shape)}, expected (batch, n, n)")
        return x.astype(self.backend.complex_dtype, copy=False)

    def realised_phases(self, commanded):
        return commanded


class DigitalTwin(_DiffractiveBase):
    """The ideal model: exact free-space propagation, perfect SLM, noiseless cameras.

    ``relay_input=True``: the input field is imaged onto layer 1 (no ``P_0``), as for a chip
    fed by the previous chip of a layer pipeline. ``input_cache``: hold ``P_0 x`` of up to
    that many samples (see :class:`InputPlaneCache`; 0, the default, holds none).
    ``activation``: the chip's digital activation between layers (module docstring).
    """

    def __init__(
        self,
        geometry: Geometry,
        backend: Backend | None = None,
        relay_input: bool = False,
        input_cache: int = 0,
        activation: Activation | None = None,
    ):
        backend = backend or get_backend()
        prop = make_propagator(
            backend,
            geometry.n,
            geometry.pitch,
            geometry.wavelength,
            geometry.distance,
            pad=geometry.pad,
            force=geometry.force_padding,
        )
        props = [None if relay_input else prop] + [prop] * geometry.n_layers
        super().__init__(geometry, backend, props, input_cache, activation)

    def data_pass(self, inputs, key: PassKey | None = None) -> Taps:
        return self._data_pass(self._inputs(inputs), self._trace())

    def error_pass(self, error, key: PassKey | None = None, to_input: bool = False) -> Taps:
        """Exact reverse-mode pass ``P^T`` (equal to the forward-only pass: free space is symmetric)."""
        check_field("error", error, self.geometry.n)
        return self._exact_error_pass(error, to_input, "pass")

    def infer(self, inputs, key: PassKey | None = None):
        if self.activation is not None:
            return self._data_pass(self._inputs(inputs), self._trace("once")).intensity
        y = donn.output_field(self._inputs(inputs), self.transmissions, self.props)
        return (y * y.conj()).real

    def describe(self) -> dict:
        return {
            "kind": "twin",
            "backend": self.backend.name,
            "dtype": np.dtype(self.backend.complex_dtype).name,
            "n_pad": self.props[-1].n_pad,
            "relay_input": self.relay_input,
            **nonlinear.describe(self.activation),
            **self.geometry.__dict__,
        }


class SimulatedChip(_DiffractiveBase):
    """A "physical" chip with hidden imperfections drawn from ``seed`` and noisy cameras.

    ``input_cache``: hold the light arriving at layer 1 for up to that many samples (the
    input plane does not depend on the phases; see :class:`InputPlaneCache`). ``activation``:
    applied to the measured fields between layers (reload measurement model only)."""

    def __init__(
        self,
        geometry: Geometry,
        hardware: HardwareSpec | None = None,
        measurement: MeasurementSpec | None = None,
        seed: int = 0,
        backend: Backend | None = None,
        relay_input: bool = False,
        input_cache: int = 0,
        activation: Activation | None = None,
    ):
        backend = backend or get_backend()
        self.seed = int(seed)
        self.hardware = hardware or HardwareSpec()
        self.measurement = measurement or MeasurementSpec(level=self.hardware.level)
        self._hidden = draw_hidden_state(self.hardware, geometry, self.seed)
        self._n_pad = make_propagator(
            backend,
            geometry.n,
            geometry.pitch,
            geometry.wavelength,
            geometry.distance + abs(self._hidden.distances - geometry.distance).max(),
            pad=geometry.pad,
            force=geometry.force_padding,
        ).n_pad
        self._correction_m = np.zeros_like(self._hidden.shifts_m)
        props = self._hops(backend, geometry)
        self._screens = backend.asarray(self._hidden.phase_screens)
        self._illumination = backend.asarray(self._hidden.illumination, backend.real_dtype)
        if relay_input:  # fed by a previous chip's output plane: no laser, no P_0
            props[0] = None
        if activation is not None and activation.active and not self.reloads:
            raise ValueError(
                f"activation={activation.kind} needs measured layers to act between; "
                "use the reload measurement model (MeasurementSpec(model='reload'))"
            )
        super().__init__(geometry, backend, props, input_cache, activation)

    def _hops(self, backend: Backend, g: Geometry) -> list:
        """``P_0 .. P_L`` with the hidden spacings, tilts and registration shifts (minus any correction)."""
        h = self._hidden
        return [
            make_propagator(
                backend,
                g.n,
                g.pitch,
                g.wavelength,
                float(z),
                n_pad=self._n_pad,
                shift_m=tuple(float(v) for v in s),
                tilt_rad=tuple(float(v) for v in t),
            )
            for z, s, t in zip(h.distances, h.shifts_m - self._correction_m, h.tilts_rad)
        ]

    def correct_registration(self, shifts_px) -> None:
        """Apply a registration calibration: every plane's frame is moved back by the measured
        shift ``shifts_px`` (L+1, 2) (y, x) pixels, as a measure-and-reload system does when it
        loads each camera frame onto the next SLM. What stays is the calibration's residual."""
        est = np.asarray(shifts_px, dtype=np.float64)
        if est.shape != self._hidden.shifts_m.shape or not np.isfinite(est).all():
            raise ValueError(f"shifts_px must be {self._hidden.shifts_m.shape} finite pixels, got shape {est.shape}")
        self._correction_m = est * self.geometry.pitch
        props = self._hops(self.backend, self.geometry)
        self.props = [None if self.relay_input else props[0]] + props[1:]
        if self._input_cache is not None:  # P_0 changed: nothing cached may be served
            self._input_cache = InputPlaneCache(self._input_cache.capacity, self.geometry.n, self.backend)

    def realised_phases(self, commanded):
        """What the SLM writes: quantise, gamma, fringing, mask offset, plus the fabrication screen."""
        xp = self.backend.xp
        out = xp.empty_like(commanded)
        for layer in range(commanded.shape[0]):
            p = slm_response(commanded[layer], self._hidden, self.backend)
            out[layer] = shift_map(p, self._hidden.mask_offsets_px[layer], self.backend) + self._screens[layer]
        return out

    def _illuminated(self, inputs):
        return self._inputs(inputs) if self.relay_input else self._inputs(inputs) * self._illumination

    @property
    def camera(self) -> Camera:
        """This chip's cameras: its measurement spec, keyed by its seed."""
        return Camera(self.measurement, self.seed, self.backend)

    @property
    def reloads(self) -> bool:
        """True under the measure-and-reload model (:mod:`optics.diffractive.reload`)."""
        return getattr(self.measurement, "model", "monitors") == "reload"

    def _commanded_transmissions(self):
        """``A_l exp(i phi_l)`` as commanded (L, n, n): what a reload chip multiplies its taps by."""
        xp = self.backend.xp
        phases, amps = self._commanded
        t = xp.exp(1j * phases).astype(self.backend.complex_dtype, copy=False)
        return t if amps is None else t * amps.astype(self.backend.real_dtype)

    def _flat_slm(self):
        """``exp(i realised(0))`` (n, n): the one SLM of a time-multiplexed chip showing no design phase,
        which the first error hop crosses as every other hop does (its screen, its response at 0)."""
        zero = self.backend.xp.zeros((1, self.geometry.n, self.geometry.n))
        return self.backend.xp.exp(1j * self.realised_phases(zero)[0]).astype(self.backend.complex_dtype)

    def _reload_camera(self, key: PassKey):
        """``(measure, key)``: the camera of every hop of one reload pass (one reference phase per pass)."""
        spec, backend = self.measurement, self.backend
        key = self.camera.keyed(key)
        if spec.noiseless:
            return (lambda field, tap, scale: None), key
        rotation = reference_rotation(spec, key, backend)

        def measure(field, tap, scale):
            measure_field_(field, spec, key, tap, backend, scale, rotation)

        return measure, key

    def _reload_data_pass(self, inputs, key: PassKey, trace: ActivationTrace | None = None) -> Taps:
        measure, key = self._reload_camera(key)
        if trace is not None:
            trace.clear()
        load = reload.loader_levels(self._hidden.quant_step, self.backend)
        taps = reload.data_pass(
            self._illuminated(inputs),
            self.transmissions,
            self._commanded_transmissions(),
            self.props,
            measure,
            load,
            Tap.DETECTOR,
            self.backend,
            None if trace is None else trace.forward,
        )
        y, sent = taps.output, taps.intensity
        intensity = measure_intensity((y * y.conj()).real / sent, self.measurement, key, self.backend) * sent
        return Taps(taps.fields, y, intensity.astype(self.backend.real_dtype, copy=False))

    def data_pass(self, inputs, key: PassKey) -> Taps:
        """Measured taps ``u_1..u_L``, detector field and detector intensity."""
        if self.reloads:
            return self._reload_data_pass(inputs, key, self._trace())
        taps = self._data_pass(self._illuminated(inputs))
        measured = [(taps.fields[layer], layer) for layer in range(taps.fields.shape[0])]
        intensity = self.camera.data_pass_taps(key, measured + [(taps.output, Tap.DETECTOR)], taps.intensity)
        return Taps(taps.fields, taps.output, intensity)

    def error_pass(self, error, key: PassKey, to_input: bool = False) -> Taps:
        """Forward-only error pass: the same optics, layer order reversed (``P``, not ``P^T``)."""
        check_field("error", error, self.geometry.n)
        if self.reloads:
            measure, _ = self._reload_camera(key)
            load = reload.loader_levels(self._hidden.quant_step, self.backend)
            first = self._flat_slm() if self.hardware.time_multiplexed else None
            between = nonlinear.reload_between(self._trace(), self._commanded_transmissions)
            be = self.backend
            return reload.error_pass(
                error, self.transmissions, self.props, measure, load, Tap.INPUT_ERROR, be, to_input, first, between
            )
        taps = donn.error_pass(error, self.transmissions, self.props, transpose=False, to_input=to_input)
        measured = [(taps.fields[layer], layer) for layer in range(taps.fields.shape[0])]
        if to_input:
            measured.append((taps.output, Tap.INPUT_ERROR))
        self.camera.error_pass_taps(key, error, measured)
        return taps

    def infer(self, inputs, key: PassKey):
        if self.reloads:
            return self._reload_data_pass(inputs, key, self._trace("once")).intensity
        y = donn.output_field(self._illuminated(inputs), self.transmissions, self.props)
        return self.camera.detected(key, (y * y.conj()).real)

    def true_data_pass(self, inputs) -> Taps:
        """Noise-free data pass (simulator-only oracle), through the activation if any."""
        return self._data_pass(self._illuminated(inputs), self._trace("true"))

    def true_error_pass(self, error, to_input: bool = False) -> Taps:
        """Exact reverse-mode pass through this chip's actual optics, ``P^T`` (oracle)."""
        return self._exact_error_pass(error, to_input, "true")

    def reveal(self) -> HiddenState:
        """The hidden imperfections, for analysis after training (never for training)."""
        return self._hidden

    def describe(self) -> dict:
        return {
            "kind": "simulated",
            "seed": self.seed,
            "backend": self.backend.name,
            "dtype": np.dtype(self.backend.complex_dtype).name,
            "n_pad": self.props[-1].n_pad,
            "level": self.hardware.level,
            "symmetric": all(p.symmetric for p in self.props if p),
            "relay_input": self.relay_input,
            "measurement_model": getattr(self.measurement, "model", "monitors"),
            **nonlinear.describe(self.activation),
            **self.geometry.__dict__,
        }
