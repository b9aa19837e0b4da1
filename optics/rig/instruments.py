"""A rig's instruments behind one counted, retried access path.

:class:`RigInstruments` holds the slmsuite objects of a measure-and-reload rig by role;
:class:`Bus` is the only way :class:`~optics.rig.chip.RigChip` touches them. Every SLM write
and every frame goes through it, so it counts frames, SLM writes and rig seconds, and it
retries a frame or a write that times out or loses its connection (``frame_retries``
times) before the failure becomes a :class:`RigFault` (a chip failure for the pipeline).

Rig seconds: the wall time spent in instrument calls plus, on a virtual clock (an
emulated rig), the time the rig itself would take: the SLM's settle after each write and
``max(exposure, 1 / frame_rate)`` per frame. On real hardware (``virtual_clock=False``)
the settle is slept here, and the wall time is the rig's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: errors a flaky link or a stalled camera raises through slmsuite's remote clients
TRANSIENT = (TimeoutError, ConnectionError, RuntimeError, OSError)


class RigFault(RuntimeError):
    """An instrument call failed after its retries: the chip has failed."""


class RigUnreachable(ConnectionError):
    """Nothing answers at the rig's address."""


@dataclass
class RigInstruments:
    """The slmsuite objects of one rig. ``design_phase`` None: the loader's phase SLM also
    writes the design phase (Xue et al. 2024); ``intensity_camera`` None: one camera."""

    field_amplitude: object
    field_phase: object
    design_phase: object | None
    camera: object
    intensity_camera: object | None = None


@dataclass
class Counters:
    frames: int = 0
    slm_writes: int = 0
    rig_seconds: float = 0.0
    retries: int = 0  # failed calls tried again
    retakes: int = 0  # shots taken again at a lower exposure because they saturated

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def quiet_slmsuite() -> None:
    """slmsuite prints every instrument's initialisation (and warns of unusual resolutions, as
    an emulated rig's are) on the console; keep its errors only (its own log buffer keeps all)."""
    import slmsuite

    configure = getattr(slmsuite, "configure_logging", None)
    if configure is not None:
        configure("ERROR")


class Bus:
    """Counted, retried writes and frames (see the module docstring)."""

    def __init__(self, instruments: RigInstruments, retries: int, frame_rate_hz: float, virtual_clock: bool):
        self.instruments = instruments
        self.retries = int(retries)
        self.frame_period_s = 1.0 / float(frame_rate_hz)
        self.virtual_clock = bool(virtual_clock)
        self.counters = Counters()
        for camera in (instruments.camera, instruments.intensity_camera):
            if camera is not None:
                camera.capture_attempts = 1  # retries are counted here, not hidden in slmsuite

    def _call(self, what: str, fn, *args, **kwargs):
        last = None
        for attempt in range(self.retries + 1):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except TRANSIENT as exc:
                last = exc
                self.counters.retries += int(attempt < self.retries)
            finally:
                self.counters.rig_seconds += time.perf_counter() - start
        raise RigFault(f"rig: {what} failed {self.retries + 1} times: {last}") from last

    def write(self, slm, phase: np.ndarray) -> None:
        """Show ``phase`` (radians) on ``slm`` and let it settle."""
        self._call(f"write to {slm.name}", slm.set_phase, np.asarray(phase, dtype=np.float64), settle=False)
        self.counters.slm_writes += 1
        settle = float(getattr(slm, "settle_time_s", 0.0) or 0.0)
        if self.virtual_clock:
            self.counters.rig_seconds += settle
        elif settle > 0:
            time.sleep(settle)
            self.counters.rig_seconds += settle

    def exposure(self, camera, exposure_s: float) -> float:
        """Set ``camera``'s exposure (seconds) when it differs; returns what it realised."""
        if camera.exposure_s != exposure_s:
            self._call(f"exposure of {camera.name}", camera.set_exposure, float(exposure_s))
        return float(camera.exposure_s)

    def frame(self, camera, timeout_s: float) -> np.ndarray:
        """One frame of ``camera`` as float64 counts."""
        image = self._call(f"frame of {camera.name}", camera.get_image, timeout_s=timeout_s, averaging=False)
        self.counters.frames += 1
        if self.virtual_clock:
            self.counters.rig_seconds += max(float(camera.exposure_s), self.frame_period_s)
        return np.asarray(image, dtype=np.float64)


@dataclass(frozen=True)
class RigRoles:
    """The names the rig's server gives each role (None: the role is not present)."""

    field_amplitude: str = "field_amplitude"
    field_phase: str = "field_phase"
    design_phase: str | None = "design_phase"
    camera: str = "camera"
    intensity_camera: str | None = None


def connect_rig(address: str, roles: RigRoles, timeout_s: float = 5.0) -> RigInstruments:
    """RemoteSLM / RemoteCamera clients for each role at ``address`` (``HOST:PORT``)."""
    from slmsuite.hardware.cameras.remote import RemoteCamera
    from slmsuite.hardware.remote import _Client
    from slmsuite.hardware.slms.remote import RemoteSLM

    quiet_slmsuite()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"rig.address must be HOST:PORT, got {address!r}")
    try:
        served = _Client.info(host=host, port=int(port), timeout=timeout_s, verbose=False) or {}
    except (OSError, RuntimeError) as exc:
        raise RigUnreachable(f"rig.address {address}: no slmsuite server answers ({exc})") from None
    wanted = {role: name for role, name in roles.__dict__.items() if name is not None}
    missing = {role: name for role, name in wanted.items() if name not in served}
    if missing:
        raise ValueError(f"rig at {address} has no hardware named {missing}; it serves {sorted(served)}")

    def client(name):
        kind = RemoteCamera if served[name] == "camera" else RemoteSLM
        return kind(name, host=host, port=int(port), timeout=timeout_s)

    made = {role: client(name) for role, name in wanted.items()}
    return RigInstruments(
        made["field_amplitude"],
        made["field_phase"],
        made.get("design_phase"),
        made["camera"],
        made.get("intensity_camera"),
    )
