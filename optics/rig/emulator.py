"""An emulated measure-and-reload rig: slmsuite SLMs and cameras whose physics is ours.

One :class:`Bench` holds the optics of one hop (the rig of Xue et al. 2024 sends every
layer through the same hop in turn): a field loader (an amplitude SLM between crossed
polarisers, ``|a| = sin(psi / 2)``, and a phase SLM), a design-phase SLM (its own, or the
loader's phase SLM), free space to the camera plane, and a camera. The hop's hidden
imperfections are those of a one-layer :class:`~optics.diffractive.chip.SimulatedChip` of
the same seed with ``time_multiplexed`` hardware (distance error, phase screen, SLM gamma
and crosstalk, registration shift and tilt), so a simulated chip of any depth with the
same seed and knobs has exactly this hop at every layer.

The holographic camera records the interference of the field with a reference beam whose
phase drifts as a random walk keyed by the frame counter (never the clock)::

    E = f * sqrt(QE Phi t)                  f: the field at the camera (loader amplitude units)
    R = sqrt(R_rate t) exp(i theta_k)       theta_k = theta_{k-1} + drift * n_k (+ scheduled jumps)
    e = Poisson(|E + R|^2) + read * n       electrons; the intensity camera records |E|^2
    counts = clip(rint(e / g), 0, 2^bits - 1), g = full_well / (2^bits - 1)

with ``Phi`` photons per pixel per second at loader amplitude 1 and ``t`` the exposure.
Timing (settle after each SLM write, exposure and frame period per frame) runs on a
virtual clock; ``real_time`` sleeps for it instead. Noise and drift are keyed by (seed,
frame index), so an uninterrupted run is reproduced exactly. Injected faults (a frame that
times out or drops its connection) are scheduled by frame index, for tests.

Served in its own process by ``ffm-rig serve --emulated`` (:mod:`optics.rig.serve`);
:func:`start_emulated_rig` runs one as a child process on 127.0.0.1 (a free port) and waits
until it answers slmsuite's ``ping``; the returned :class:`EmulatedRig` stops it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from slmsuite.hardware.cameras.camera import Camera
from slmsuite.hardware.slms.slm import SLM

from optics.core.backend import get_backend
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

GEOMETRIES = {"small": Geometry.small, "reference": Geometry.reference}
FAULT_KINDS = ("timeout", "drop")
_NOISE, _DRIFT = 0xCA, 0xD1


@dataclass(frozen=True)
class EmulatorSpec:
    """The emulated rig: its hop geometry, hidden imperfections, light, camera and timing."""

    geometry: Geometry = field(default_factory=Geometry.small)
    seed: int = 0
    level: float = 1.0
    hardware: dict = field(default_factory=dict)  # HardwareSpec knob overrides
    separate_design_slm: bool = True  # False: the design phase is written on the loader's phase SLM
    intensity_camera: bool = False  # a second camera without reference (the detected intensity)
    # the camera's pixels per SLM pixel along each axis (>= 2 for off-axis holography) and the
    # reference's tilt on the camera grid, cycles per camera pixel (0: an on-axis reference)
    camera_oversample: int = 1
    reference_carrier_cyc_per_px: tuple = (0.0, 0.0)
    photons_per_px_s: float = 1.0e6  # at loader amplitude 1 (1e4 per pixel in the 10 ms exposure)
    quantum_efficiency: float = 0.64
    reference_e_per_px_s: float = 2.0e5  # reference beam: 2,000 e- per pixel in 10 ms
    read_noise_e: float = 2.5
    adc_bits: int = 12
    full_well_e: float = 40_000.0
    exposure_s: float = 0.01  # the cameras' initial exposure
    frame_rate_hz: float = 30.0  # the paper's cameras ran at 30 fps
    settle_s: float = 0.15  # after each SLM write (the paper's sleep)
    slm_bits: int = 8
    drift_rad_per_frame: float = 0.002  # reference-phase random walk, rms per frame
    drift_jumps: tuple = ()  # ((frame, radians), ...): sudden reference-phase jumps
    fault_frames: tuple = ()  # frame indices that fail (tests)
    fault_kind: str = "drop"  # timeout | drop
    fault_sleep_s: float = 2.0  # how long a "timeout" frame stalls the server
    real_time: bool = False  # sleep for settles and exposures instead of a virtual clock

    def __post_init__(self) -> None:
        if self.fault_kind not in FAULT_KINDS:
            raise ValueError(f"fault_kind must be one of {', '.join(FAULT_KINDS)}, got {self.fault_kind!r}")
        if int(self.camera_oversample) != self.camera_oversample or self.camera_oversample < 1:
            raise ValueError(f"camera_oversample must be an integer >= 1, got {self.camera_oversample}")
        for name in ("photons_per_px_s", "reference_e_per_px_s", "full_well_e", "exposure_s", "frame_rate_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"emulator {name} must be > 0, got {getattr(self, name)}")

    @property
    def hardware_spec(self) -> HardwareSpec:
        """The hop's imperfection knobs: ``level``, the overrides, time-multiplexed, the SLMs' bits."""
        knobs = {"slm_bits": self.slm_bits, **self.hardware, "time_multiplexed": True}
        return HardwareSpec(level=self.level, **knobs)

    def to_json(self) -> str:
        data = asdict(self)
        data["geometry"] = asdict(self.geometry)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> EmulatorSpec:
        data = json.loads(text)
        data["geometry"] = Geometry(**data["geometry"])
        for key in ("drift_jumps", "fault_frames", "reference_carrier_cyc_per_px"):
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data.get(key, ()))
        return cls(**data)


class Bench:
    """The optics and clocks one server process shares among its SLMs and cameras."""

    def __init__(self, spec: EmulatorSpec):
        self.spec = spec
        g = replace(spec.geometry, n_layers=1)
        backend = get_backend("numpy", "complex128", fft_threads=1)
        self.hop = SimulatedChip(g, spec.hardware_spec, MeasurementSpec.off(), spec.seed, backend, relay_input=True)
        n = g.n
        self.phases = {"field_amplitude": np.zeros((n, n)), "field_phase": np.zeros((n, n))}
        self.phases["design_phase"] = np.zeros((n, n))
        self.frames = 0
        self.slm_writes = 0
        self.clock_s = 0.0
        self.theta = 0.0
        self._programmed = None

    def wait(self, seconds: float) -> None:
        """Advance the rig's clock (and sleep in real time)."""
        self.clock_s += seconds
        if self.spec.real_time and seconds > 0:
            time.sleep(seconds)

    def write(self, role: str, phase: np.ndarray) -> None:
        """An SLM of ``role`` now shows ``phase`` (radians, its own levels)."""
        self.phases[role] = np.asarray(phase, dtype=np.float64)
        self.slm_writes += 1
        self.wait(self.spec.settle_s)

    def field(self) -> np.ndarray:
        """The complex field at the camera (n, n), in loader amplitude units."""
        amplitude = np.sin(self.phases["field_amplitude"] / 2.0)
        if self.spec.separate_design_slm:
            loaded, design = amplitude * np.exp(1j * self.phases["field_phase"]), self.phases["design_phase"]
        else:  # one phase SLM carries the field's phase and the design phase: its response acts on the sum
            loaded, design = amplitude + 0j, self.phases["field_phase"]
        key = design.tobytes()
        if self._programmed != key:
            self.hop.program(design[None])
            self._programmed = key
        return self.hop.true_data_pass(loaded[None]).output[0]

    def _advance_drift(self, frame: int) -> None:
        rng = np.random.default_rng([self.spec.seed, frame, _DRIFT])
        self.theta += self.spec.drift_rad_per_frame * float(rng.standard_normal())
        self.theta += sum(float(rad) for at, rad in self.spec.drift_jumps if int(at) == frame)

    def reference_phase(self, shape) -> np.ndarray:
        """``exp(i (theta + 2 pi f.r))`` on the camera grid: the drifting, possibly tilted reference."""
        fy, fx = (float(v) for v in self.spec.reference_carrier_cyc_per_px)
        y, x = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
        return np.exp(1j * (self.theta + 2 * np.pi * (fy * y + fx * x)))

    def frame(self, exposure_s: float, holographic: bool) -> np.ndarray:
        """One camera frame (uint16 counts); fails as scheduled in ``fault_frames``."""
        s = self.spec
        k = self.frames
        self.frames += 1
        self._advance_drift(k)
        self.wait(max(exposure_s, 1.0 / s.frame_rate_hz))
        if k in s.fault_frames:
            if s.fault_kind == "timeout":
                time.sleep(s.fault_sleep_s)
            else:
                raise ConnectionAbortedError(f"emulated rig: frame {k} dropped (scheduled fault)")
        e_field = upsample(self.field(), s.camera_oversample)
        e_field *= math.sqrt(s.quantum_efficiency * s.photons_per_px_s * exposure_s)
        if holographic:
            e_field += math.sqrt(s.reference_e_per_px_s * exposure_s) * self.reference_phase(e_field.shape)
        mean_e = e_field.real**2 + e_field.imag**2
        rng = np.random.default_rng([s.seed, k, _NOISE])
        electrons = rng.poisson(mean_e) + s.read_noise_e * rng.standard_normal(mean_e.shape)
        top = 2**s.adc_bits - 1
        return np.clip(np.rint(electrons / (s.full_well_e / top)), 0, top).astype(np.uint16)


def upsample(field: np.ndarray, factor: int) -> np.ndarray:
    """The band-limited ``field`` (n, n) on a ``factor`` times finer grid (spectrum zero-padded;
    sample values kept, so the amplitude units do not change)."""
    if factor == 1:
        return field.copy()
    n = field.shape[0]
    spectrum = np.fft.fftshift(np.fft.fft2(field))
    big = np.zeros((n * factor, n * factor), dtype=np.complex128)
    o = (n * factor - n) // 2
    big[o : o + n, o : o + n] = spectrum
    return np.fft.ifft2(np.fft.ifftshift(big)) * factor**2


class EmulatedSLM(SLM):
    """An slmsuite SLM whose writes set the bench's loader or design phase (``role``)."""

    def __init__(self, bench: Bench, role: str, name: str | None = None):
        g, s = bench.spec.geometry, bench.spec
        self.bench, self.role = bench, role
        super().__init__(
            (g.n, g.n),
            bitdepth=s.slm_bits,
            name=name or role,
            wav_um=g.wavelength * 1e6,
            pitch_um=(g.pitch * 1e6, g.pitch * 1e6),
            settle_time_s=s.settle_s,
        )

    def _set_phase_hw(self, display):
        self.bench.write(self.role, np.asarray(self._gray2phase(np.asarray(display)), dtype=np.float64))

    def close(self):
        pass


class EmulatedCamera(Camera):
    """An slmsuite camera on the bench: holographic (with the reference) or intensity only."""

    def __init__(self, bench: Bench, name: str = "camera", holographic: bool = True):
        g, s = bench.spec.geometry, bench.spec
        self.bench, self.holographic = bench, holographic
        self._exposure_hw_s = s.exposure_s
        px, pitch_um = g.n * s.camera_oversample, g.pitch * 1e6 / s.camera_oversample
        super().__init__((px, px), bitdepth=s.adc_bits, pitch_um=(pitch_um, pitch_um), name=name)

    def _get_exposure_hw(self):
        return self._exposure_hw_s

    def _set_exposure_hw(self, exposure_s):
        self._exposure_hw_s = float(exposure_s)

    def _get_image_hw(self, timeout_s=1):
        return self.bench.frame(self._exposure_hw_s, self.holographic)

    def close(self):
        pass


def emulated_hardware(spec: EmulatorSpec) -> list:
    """The rig's slmsuite objects on one bench, named by role."""
    bench = Bench(spec)
    hardware = [EmulatedSLM(bench, "field_amplitude"), EmulatedSLM(bench, "field_phase")]
    if spec.separate_design_slm:
        hardware.append(EmulatedSLM(bench, "design_phase"))
    hardware.append(EmulatedCamera(bench, "camera", holographic=True))
    if spec.intensity_camera:
        hardware.append(EmulatedCamera(bench, "intensity_camera", holographic=False))
    return hardware


def add_emulator_arguments(parser) -> None:
    """``ffm-rig serve --emulated`` options: a named geometry and seed/level, or a full spec as JSON."""
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="small", help="the hop's geometry")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hidden imperfections and the noise")
    parser.add_argument("--level", type=float, default=1.0, help="imperfection level (0: ideal optics)")
    parser.add_argument("--real-time", action="store_true", help="sleep for settles and exposures")
    parser.add_argument("--spec-json", default=None, help="a full EmulatorSpec as JSON (overrides the above)")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process (the trainer) dies")


def emulated_hardware_from_args(args) -> list:
    """The emulated rig's hardware from :func:`add_emulator_arguments`' options."""
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    if args.spec_json:
        return emulated_hardware(EmulatorSpec.from_json(args.spec_json))
    spec = EmulatorSpec(GEOMETRIES[args.geometry](), seed=args.seed, level=args.level, real_time=args.real_time)
    return emulated_hardware(spec)


def die_with_parent(parent_pid: int) -> None:
    """In a child server: on Linux, SIGTERM when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when an slmsuite server at ``host:port`` answers ``ping``."""
    from slmsuite.hardware.remote import _Client

    try:
        _Client.info(host=host, port=port, timeout=timeout_s, verbose=False)
    except (OSError, RuntimeError, ValueError):
        return False
    return True


class EmulatedRig:
    """A running ``ffm-rig serve --emulated`` process; ``address`` is ``HOST:PORT``."""

    def __init__(self, spec: EmulatorSpec, host: str = "127.0.0.1", start_timeout_s: float = 60.0):
        self.spec, self.host = spec, host
        self.port = free_port(host)
        command = [sys.executable, "-m", "optics.rig.serve", "serve", "--emulated", "--spec-json", spec.to_json()]
        command += ["--host", host, "--port", str(self.port)]
        # the server's log goes to a file nobody has to drain (a pipe could fill and stall it)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ffm-rig-", suffix=".log")
        command += ["--parent-pid", str(os.getpid())]  # a SIGKILLed driver leaves no emulated rig behind
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + start_timeout_s
        while not answers(host, self.port, timeout_s=0.5):
            if self.process.poll() is not None:
                self.log.seek(0)
                err = self.log.read().strip().splitlines()
                raise RuntimeError(f"emulated rig exited at start: {err[-1] if err else self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulated rig did not answer on {host}:{self.port} within {start_timeout_s} s")
            time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server process (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> EmulatedRig:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_emulated_rig(spec: EmulatorSpec, host: str = "127.0.0.1") -> EmulatedRig:
    """Start an emulated rig serving ``spec`` on ``host`` (a free port); see :class:`EmulatedRig`."""
    return EmulatedRig(spec, host)
