"""``RigChip``: an :class:`~optics.core.chip.OpticalChip` that is a physical measure-and-reload rig.

The rig of Xue et al. (Nature 632, 280, 2024) sends every layer through one hop in turn:
the field loader (an amplitude SLM and a phase SLM) shows the field ``a_l``, the design
SLM adds ``phi_l``, free space carries it to a camera, phase-shifting holography measures
the complex field there, and that measured field, normalised to a peak of 1, is what the
loader shows for the next layer. Per shot (one sample, one hop)::

    write |a| / c on the amplitude SLM                     c = max |a|
    for each step d_k: write arg(a) + d_k, take a frame    I_k = |E e^{i d_k} + R|^2 (counts)
    C = E conj(R)  (least squares over the steps)          optics.rig.holography
    a_next = c * C exp(i Delta) / (|R| sqrt(K t))          Delta: drift, K: throughput, t: exposure

then the registration shift is undone (a Fourier shift). ``|R|^2``, ``K``, ``Delta`` and the
shift come from the calibrations (:mod:`optics.rig.calibration`). The FFM taps are
``u_l = exp(i phi_l) a_l`` (the rig never sees the field right after its SLM). A shot whose
frames saturate is retaken at a quarter of the exposure. Every write and frame goes through
one counted, retried :class:`~optics.rig.instruments.Bus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optics.core.backend import Backend, get_backend
from optics.core.measurement import PassKey
from optics.core.propagation import check_field
from optics.core.taps import Taps
from optics.diffractive.detectors import make_detectors
from optics.diffractive.geometry import Geometry
from optics.rig import holography
from optics.rig.instruments import Bus, RigFault, RigInstruments, RigRoles, RigUnreachable, connect_rig
from optics.rig.timing import RigTiming

__all__ = ["RigChip", "RigFault", "RigInstruments", "RigRoles", "RigSettings", "RigUnreachable", "connect_rig"]


@dataclass(frozen=True)
class RigSettings:
    """How a rig is driven. ``settle_s`` None: each SLM's own ``settle_time_s``."""

    scheme: str = "3-step"  # holography: 3-step | 4-step (phase shifting on the loader's phase SLM)
    averaging: int = 1  # frames averaged per phase step
    drift_every_batches: int = 1  # re-measure the reference phase every this many batches (the paper: 1)
    error_exposure_boost: float = 3.0  # the first error-pass hop's exposure multiplier (the paper: 3x)
    frame_retries: int = 3  # retries of a frame or write that fails before the chip fails
    frame_timeout_s: float = 5.0
    frame_rate_hz: float = 30.0  # the camera's frame rate (a frame takes max(exposure, 1 / rate))
    saturation_max_fraction: float = 1e-4  # a shot with more saturated pixels is retaken darker
    registration_probes: int = 8  # random probes of the registration calibration
    calibrate_response: bool = True  # measure the design SLM's phase response and invert it
    virtual_clock: bool = False  # an emulated rig: count settles and exposures instead of sleeping
    camera_oversample: int = 1  # camera pixels per SLM pixel (off-axis holography needs >= 2)
    off_axis_carrier_cyc_per_px: tuple = (0.25, 0.25)  # the reference's tilt, cycles per camera pixel
    off_axis_radius_cyc_per_px: float | None = None  # the sideband filter; None: the field's band's

    def __post_init__(self) -> None:
        holography.phase_steps(self.scheme)  # one line naming the known schemes
        for name in ("averaging", "drift_every_batches", "registration_probes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"rig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.camera_oversample) != self.camera_oversample or self.camera_oversample < 1:
            raise ValueError(f"rig.camera_oversample must be an integer >= 1, got {self.camera_oversample}")
        if self.off_axis and self.camera_oversample < 2:
            raise ValueError(
                "rig.scheme=off-axis needs a camera oversampling the field (rig.camera_oversample >= 2, a tilted "
                "reference: rig.off_axis_carrier_cyc_per_px); use rig.scheme=3-step or 4-step otherwise"
            )
        if self.off_axis:
            try:
                holography.off_axis_disc((64, 64), self.off_axis_carrier_cyc_per_px, self.off_axis_radius)
            except ValueError as exc:
                raise ValueError(
                    f"rig.camera_oversample={self.camera_oversample} with rig.off_axis_carrier_cyc_per_px="
                    f"{tuple(self.off_axis_carrier_cyc_per_px)}: the field's sideband does not fit ({exc}); "
                    "oversample more (6 with the carrier (0.25, 0.25))"
                ) from None
        if self.frame_retries < 0 or not self.frame_timeout_s > 0 or not self.frame_rate_hz > 0:
            raise ValueError("rig.frame_retries must be >= 0 and rig.frame_timeout_s, rig.frame_rate_hz > 0")

    @property
    def off_axis(self) -> bool:
        return self.scheme == "off-axis"

    @property
    def off_axis_radius(self) -> float:
        """The sideband disc: given, or the one circumscribing the field's square band
        (``sqrt(2) / 2`` cycles per SLM pixel, ``/ camera_oversample`` per camera pixel)."""
        if self.off_axis_radius_cyc_per_px is not None:
            return float(self.off_axis_radius_cyc_per_px)
        return math.sqrt(2) / 2 / self.camera_oversample


@dataclass
class RigState:
    """What the calibrations measured (``None`` until measured)."""

    exposure_s: float = 0.0  # the shots' exposure
    reference_counts_per_s: np.ndarray | None = None  # |R|^2 per pixel per second of exposure
    throughput: float = 1.0  # K: camera counts per second per unit |loaded field|^2
    drift_rad: float = 0.0  # Delta: reference phase change since the first probe
    probe_cross: np.ndarray | None = None  # C of the plane-wave probe at the first calibration
    shift_px: np.ndarray = None  # registration (dy, dx) of the camera frame, pixels
    gamma: float = 1.0  # design SLM phase response exponent (realised = 2 pi (p / 2 pi)^gamma)


class RigChip:
    """A physical measure-and-reload rig behind the ``OpticalChip`` protocol (module docstring)."""

    def __init__(
        self, geometry: Geometry, instruments: RigInstruments, settings: RigSettings, backend: Backend | None = None
    ):
        self.geometry, self.settings = geometry, settings
        self.backend = backend or get_backend()
        self.detectors = make_detectors(geometry, self.backend)
        self.instruments = instruments
        self.steps = holography.phase_steps(settings.scheme)
        self.check()
        self.bus = Bus(instruments, settings.frame_retries, settings.frame_rate_hz, settings.virtual_clock)
        self.state = RigState(exposure_s=float(instruments.camera.exposure_s), shift_px=np.zeros(2))
        self.amplitudes = None
        self.phases = np.zeros(geometry.phase_shape)
        self.calibrations: list = []
        self.batches = 0
        self._drift_due = False
        self._shared_design = None
        self.samples = {"train": 0, "infer": 0}
        self._seconds = {"train": 0.0, "infer": 0.0}

    # -- checks and programming -------------------------------------------------------------------

    def check(self) -> None:
        """One line if an SLM or the camera does not match the geometry or the scheme."""
        n, pitch_um = self.geometry.n, self.geometry.pitch * 1e6
        ins = self.instruments
        for role in ("field_amplitude", "field_phase", "design_phase", "camera"):
            device = getattr(ins, role)
            if device is None:
                continue
            shape = tuple(int(v) for v in device.shape)
            if shape[0] < n or shape[1] < n:
                raise ValueError(f"rig {role} {device.name} has {shape} px, fewer than the geometry's {n} x {n}")
            pitch = getattr(device, "pitch_um", None)
            if role != "camera" and pitch is not None and not np.allclose(pitch, pitch_um, rtol=0.01):
                raise ValueError(
                    f"rig {role} {device.name} has a {' x '.join(f'{float(v):g}' for v in pitch)} um pitch but the "
                    f"geometry's is {pitch_um:g} um; "
                    "set chip.geometry/pitch to the SLM's"
                )
        m, cam = self.settings.camera_oversample, tuple(int(v) for v in ins.camera.shape)
        if cam[0] < m * n or cam[1] < m * n:
            raise ValueError(
                f"rig camera {ins.camera.name} has {cam} px, fewer than rig.camera_oversample x n = {m * n}"
            )

    def program(self, phases, amplitudes=None) -> None:
        """Commanded phases (L, n, n) radians; the design SLM shows them layer by layer."""
        phases = np.asarray(self.backend.to_numpy(phases), dtype=np.float64)
        if phases.shape != self.geometry.phase_shape:
            raise ValueError(f"phases has shape {phases.shape}, expected {self.geometry.phase_shape}")
        if amplitudes is not None:
            raise ValueError("a rig's layers are phase-only; amplitude training needs an amplitude SLM per layer")
        check_field("phases", phases, self.geometry.n)
        self.phases = phases

    def design_command(self, phase: np.ndarray) -> np.ndarray:
        """What to write for a wanted realised phase: the inverse of the measured response."""
        wrapped = np.mod(phase, 2 * math.pi)
        if self.state.gamma == 1.0:
            return wrapped
        return 2 * math.pi * (wrapped / (2 * math.pi)) ** (1.0 / self.state.gamma)

    # -- one shot ---------------------------------------------------------------------------------

    def _pad(self, image: np.ndarray, shape) -> np.ndarray:
        """``image`` (n, n) centred in a device of ``shape`` (zeros around it)."""
        n = self.geometry.n
        if tuple(shape) == (n, n):
            return image
        out = np.zeros(tuple(shape))
        oy, ox = (shape[0] - n) // 2, (shape[1] - n) // 2
        out[oy : oy + n, ox : ox + n] = image
        return out

    def _crop(self, frame: np.ndarray) -> np.ndarray:
        """The camera frame's centre: ``camera_oversample`` pixels per field pixel."""
        n = self.geometry.n * self.settings.camera_oversample
        oy, ox = (frame.shape[0] - n) // 2, (frame.shape[1] - n) // 2
        return frame[oy : oy + n, ox : ox + n]

    def write_design(self, phase: np.ndarray) -> None:
        """Show a design phase (realised radians) on the design SLM (nothing to write when shared)."""
        slm = self.instruments.design_phase
        if slm is not None:
            self.bus.write(slm, self._pad(self.design_command(phase), slm.shape))
        self._shared_design = phase if slm is None else None

    def frames(self, loaded: np.ndarray, exposure_s: float) -> np.ndarray:
        """The phase-stepped frames (K, n, n) of one loaded field (peak <= 1), in counts."""
        ins, bus, s = self.instruments, self.bus, self.settings
        bus.exposure(ins.camera, exposure_s)
        psi = 2.0 * np.arcsin(np.clip(np.abs(loaded), 0.0, 1.0))
        bus.write(ins.field_amplitude, self._pad(psi, ins.field_amplitude.shape))
        base = np.angle(loaded)
        if self._shared_design is not None:
            base = base + self.design_command(self._shared_design)
        side = self.geometry.n * s.camera_oversample
        out = np.empty((len(self.steps), side, side))
        for k, step in enumerate(self.steps):
            bus.write(ins.field_phase, self._pad(base + step, ins.field_phase.shape))
            stack = [self._crop(bus.frame(ins.camera, s.frame_timeout_s)) for _ in range(s.averaging)]
            out[k] = holography.average_frames(np.stack(stack))
        return out

    def cross(self, loaded: np.ndarray, exposure_s: float) -> tuple[np.ndarray, float]:
        """``(C, t)``: ``E conj(R)`` of one loaded field, retaken darker while it saturates."""
        full_scale = 2 ** int(self.instruments.camera.bitdepth) - 1
        for _ in range(8):
            frames = self.frames(loaded, exposure_s)
            if holography.saturated_fraction(frames, full_scale) <= self.settings.saturation_max_fraction:
                return self._cross_of(frames), exposure_s
            self.bus.counters.retakes += 1
            exposure_s /= 4.0
        raise RigFault(f"rig: frames still saturate at {exposure_s:.3g} s exposure; lower the light")

    def _cross_of(self, frames: np.ndarray) -> np.ndarray:
        """``C`` on the field's grid: phase shifting, or the off-axis sideband brought down to it."""
        s = self.settings
        if not s.off_axis:
            return holography.phase_shifting_cross(frames, self.steps)
        fine = holography.off_axis_cross(frames[0], s.off_axis_carrier_cyc_per_px, s.off_axis_radius)
        return holography.downsample(fine, s.camera_oversample)

    def shot(self, loaded: np.ndarray, boost: float = 1.0) -> np.ndarray:
        """The field at the camera (n, n) for a loaded field (peak <= 1), in loader amplitude units."""
        st = self.state
        c, t = self.cross(loaded, st.exposure_s * boost)
        r2 = st.reference_counts_per_s * t
        field = c * np.exp(1j * st.drift_rad) / np.sqrt(np.maximum(r2, 1e-12) * st.throughput * t)
        return holography.fourier_shift(field, -st.shift_px)

    # -- passes -----------------------------------------------------------------------------------

    def _hops(self, fields: np.ndarray, layers, boost_first: float = 1.0) -> np.ndarray:
        """Measure-and-reload through ``layers`` (layer index or None: no design phase), layer-major:
        the design SLM is written once per hop, then every sample is loaded and measured."""
        a = fields
        for i, layer in enumerate(layers):
            self.write_design(np.zeros(self.geometry.phase_shape[1:]) if layer is None else self.phases[layer])
            boost = boost_first if i == 0 else 1.0
            out = np.empty_like(a)
            for b in range(a.shape[0]):
                peak = float(np.abs(a[b]).max())
                out[b] = peak * self.shot(a[b] / peak, boost) if peak > 0 else 0.0
            a = out
        return a

    def _drift_probe(self, starts_batch: bool) -> None:
        """Re-measure the reference phase before this pass when the batch is due: before its
        data pass and again before its error pass, so both read against the same reference."""
        if starts_batch:
            if self.state.probe_cross is None:
                raise RuntimeError("rig: not calibrated; run RigChip.calibrate(twin) before any pass")
            self._drift_due = self.batches % self.settings.drift_every_batches == 0
            self.batches += 1
        if self._drift_due:
            from optics.rig.calibration import calibrate_drift

            self.calibrations.append(calibrate_drift(self))

    def _timed(self, kind: str, n_samples: int, fn):
        start = self.bus.counters.rig_seconds
        result = fn()
        self._seconds[kind] += self.bus.counters.rig_seconds - start
        self.samples[kind] += n_samples
        return result

    def _inputs(self, inputs) -> np.ndarray:
        x = np.asarray(self.backend.to_numpy(inputs), dtype=np.complex128)
        check_field("inputs", x, self.geometry.n)
        if x.ndim != 3:
            raise ValueError(f"inputs has shape {x.shape}, expected (batch, n, n)")
        return x

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Taps ``u_l = exp(i phi_l) a_l`` (L, B, n, n) and the detector field."""
        taps = np.empty((self.geometry.n_layers,) + x.shape, dtype=np.complex128)
        a = x
        for layer in range(self.geometry.n_layers):
            taps[layer] = np.exp(1j * self.phases[layer]) * a
            a = self._hops(a, [layer])
        return taps, a

    def data_pass(self, inputs, key: PassKey) -> Taps:
        """Measured taps, detector field and intensity ``|y|^2`` of a batch (one round's data pass)."""
        x = self._inputs(inputs)
        self._drift_probe(starts_batch=True)
        taps, y = self._timed("train", 0, lambda: self._forward(x))
        be = self.backend
        intensity = (y.real**2 + y.imag**2).astype(be.real_dtype)
        return Taps(be.asarray(taps, be.complex_dtype), be.asarray(y, be.complex_dtype), be.asarray(intensity))

    def error_pass(self, error, key: PassKey, to_input: bool = False) -> Taps:
        """The error field sent forward through the same hop, layers in reverse order."""
        e = self._inputs(error)
        self._drift_probe(starts_batch=False)
        n_layers = self.geometry.n_layers
        fields = np.empty((n_layers,) + e.shape, dtype=np.complex128)

        def run():
            a = self._hops(e, [None], boost_first=self.settings.error_exposure_boost)
            fields[n_layers - 1] = a
            for layer in range(n_layers - 1, 0, -1):
                fields[layer - 1] = a = self._hops(a, [layer])

        self._timed("train", e.shape[0], run)
        at_input = np.exp(1j * self.phases[0]) * fields[0] if to_input else None
        be = self.backend
        return Taps(be.asarray(fields, be.complex_dtype), None if at_input is None else be.asarray(at_input))

    def infer(self, inputs, key: PassKey):
        """Detected intensity ``|y|^2`` (B, n, n) of a batch."""
        x = self._inputs(inputs)
        _, y = self._timed("infer", x.shape[0], lambda: self._forward(x))
        return self.backend.asarray((y.real**2 + y.imag**2).astype(self.backend.real_dtype))

    # -- reports ----------------------------------------------------------------------------------

    def calibrate(self, twin) -> list:
        """The start-up calibrations (reference, exposure, throughput, registration, response)."""
        from optics.rig.calibration import calibrate_all

        done = calibrate_all(self, twin)
        self.calibrations.extend(done)
        return done

    def drain_calibrations(self) -> list:
        """Calibrations done since the last drain (the periodic drift probes included)."""
        done, self.calibrations = self.calibrations, []
        return done

    def counters(self) -> dict:
        """Cumulative ``frames``, ``slm_writes``, ``rig_seconds``, ``retries`` and saturated ``retakes``."""
        return self.bus.counters.as_dict()

    def timing(self) -> RigTiming:
        """The timing model of this rig: its scheme, its SLMs' settle, the calibrated exposure."""
        ins = self.instruments
        settle = max(float(getattr(d, "settle_time_s", 0.0) or 0.0) for d in (ins.field_amplitude, ins.field_phase))
        return RigTiming(
            scheme=self.settings.scheme,
            settle_s=settle,
            frame_rate_hz=self.settings.frame_rate_hz,
            exposure_s=self.state.exposure_s,
            averaging=self.settings.averaging,
            separate_design_slm=ins.design_phase is not None,
        )

    def seconds_per_sample(self, batch: int = 32) -> dict:
        """Rig seconds per training sample (data + error pass) and per inference sample: as
        counted so far, or the timing model's projection before any sample was counted."""
        model = self.timing()
        projected = {
            "train": model.training_sample(self.geometry.n_layers, batch)["seconds"],
            "infer": model.per_sample(self.geometry.n_layers, batch)["seconds"],
        }
        return {k: self._seconds[k] / self.samples[k] if self.samples[k] else projected[k] for k in projected}

    def describe(self) -> dict:
        return {
            "kind": "rig",
            "scheme": self.settings.scheme,
            "design_slm": "separate" if self.instruments.design_phase is not None else "loader phase SLM",
            "camera": getattr(self.instruments.camera, "name", "camera"),
            "backend": self.backend.name,
            "relay_input": True,
            **self.geometry.__dict__,
        }
