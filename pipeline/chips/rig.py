"""The rig chip system: a physical measure-and-reload rig (:mod:`optics.rig`) over slmsuite's TCP protocol.

Each chip is one rig: a field loader (amplitude and phase SLMs), a design SLM and a
holographic camera behind an ``ffm-rig serve`` process at ``rig.address``, or, with
``rig.address`` null, an emulated rig that the driver starts on 127.0.0.1 for the run and
stops afterwards (:meth:`Rig.attach`). Before any actor exists the driver connects to every
rig and checks its SLMs and camera against the geometry and the holography scheme (one line,
no frame taken). A chip actor needs one ``optical_chip`` Ray resource and holds its rig
exclusively in the cluster: it is the named actor ``rig@HOST:PORT`` (:meth:`Rig.claim`), so a
second claim is refused. The actor connects, checks and calibrates before its first round
(:meth:`Rig.make_chips`); its twin loads the input straight onto the first layer, as the rig
does. A frame that never comes (after the rig's own retries) is a :class:`RigFault`: the fault
path re-runs the call like a crashed chip's (:attr:`Rig.faults`).
"""

from __future__ import annotations

import contextlib
import dataclasses

from optics.diffractive.chip import DigitalTwin
from optics.diffractive.imperfections import HardwareSpec
from optics.rig.chip import RigChip, RigFault, RigRoles, RigSettings, RigUnreachable, connect_rig
from pipeline.chips.base import CLAIMS_NAMESPACE, ChipSpec, Claim, Design, RigSpec, no_options, with_address
from pipeline.chips.diffractive import Diffractive

ROLES = tuple(f.name for f in dataclasses.fields(RigRoles))
SLM_ROLES = ("field_amplitude", "field_phase", "design_phase")
_HARDWARE_DEFAULTS = HardwareSpec()


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


class Rig(Diffractive):
    kind = "rig"
    topologies = ("single", "data_parallel")  # one rig per chip; a rig is never a stage of another
    calibrates_registration = False  # a rig calibrates itself (reference, exposure, registration) at start
    activations = False  # its driver (optics.rig.chip) reloads fields without a digital activation
    resources = {"optical_chip": 1.0}  # what a node wired to a rig advertises (deploy/)
    faults = (RigFault,)

    def design(self, knobs, n_classes: int, n_features: int) -> Design:
        no_options(self.kind, knobs.options)
        if knobs.only is not None:
            raise ValueError(
                f"chip.only selects a simulated chip's imperfection groups; for chip={self.kind} set "
                "chip.hardware knobs (the emulated rig's)"
            )
        if getattr(knobs, "measurement", None):
            raise ValueError(
                f"chip.measurement sets a simulated camera; chip={self.kind} measures with its own camera "
                "(an emulated rig's light: rig.emulator.*)"
            )
        return Design(self._geometry(knobs, n_classes), HardwareSpec, {}, {})

    def max_stages(self, knobs) -> int:
        return 1

    # -- the rig a chip drives ----------------------------------------------------------------------

    def bind_rig(self, spec: ChipSpec, knobs) -> ChipSpec:
        """``spec`` with its rig: the server's role names, how it is driven, and (no address) the
        emulated rig the driver will start for it (seed: the chip's, level: chip.level)."""
        roles = RigRoles(**{role: getattr(knobs.hardware, role) for role in ROLES})
        emulated = knobs.address is None
        settings = RigSettings(
            scheme=knobs.scheme,
            camera_oversample=knobs.camera_oversample,
            averaging=knobs.averaging,
            drift_every_batches=knobs.drift_every_batches,
            calibrate_response=knobs.calibrate_response,
            error_exposure_boost=knobs.error_exposure_boost,
            frame_retries=knobs.frame_retries,
            frame_timeout_s=knobs.frame_timeout_s,
            frame_rate_hz=knobs.frame_rate_hz,
            virtual_clock=emulated and not knobs.emulator.real_time,  # an emulated rig's clock is counted
        )
        emulator = self._emulator(spec, knobs, roles, settings) if emulated else None
        rig = RigSpec(knobs.address, roles, settings, knobs.settle_s, knobs.connect_timeout_s, emulator)
        return dataclasses.replace(spec, rig=rig)

    def _emulator(self, spec: ChipSpec, knobs, roles: RigRoles, settings: RigSettings) -> dict:
        """The fields of the chip's emulated rig (``optics.rig.emulator.EmulatorSpec``), but its geometry."""
        e = knobs.emulator
        hardware = {
            f.name: getattr(spec.hardware, f.name)
            for f in dataclasses.fields(HardwareSpec)
            if f.name not in ("level", "time_multiplexed")
            and getattr(spec.hardware, f.name) != getattr(_HARDWARE_DEFAULTS, f.name)
        }
        return {
            "seed": spec.seed if e.seed is None else int(e.seed),
            "level": spec.hardware.level if e.level is None else float(e.level),
            "hardware": hardware,
            "separate_design_slm": roles.design_phase is not None,
            "intensity_camera": roles.intensity_camera is not None,
            "photons_per_px_s": e.photons_per_px_s,
            "exposure_s": e.exposure_s,
            "frame_rate_hz": knobs.frame_rate_hz,
            "settle_s": e.settle_s,
            "drift_rad_per_frame": e.drift_rad_per_frame,
            "fault_frames": tuple(int(k) for k in e.fault_frames),
            "fault_kind": e.fault_kind,
            "real_time": e.real_time,
            "pitch_m": e.pitch_m,
            "camera_oversample": knobs.camera_oversample if e.camera_oversample is None else e.camera_oversample,
            "reference_carrier_cyc_per_px": settings.off_axis_carrier_cyc_per_px if settings.off_axis else (0.0, 0.0),
        }

    @contextlib.contextmanager
    def attach(self, specs: tuple[ChipSpec, ...]):
        """Start an emulated rig for every chip without an address, connect to every rig and check
        it against its chip (one line, no frame taken); yield the specs bound to their rigs; stop
        the emulated rigs on exit, however the run ends."""
        started: list = []
        try:
            yield tuple(self._bring_up(spec, started) for spec in specs)
        finally:
            for rig in reversed(started):
                rig.stop()

    def _bring_up(self, spec: ChipSpec, started: list) -> ChipSpec:
        if spec.rig.address is None:
            from optics.rig.emulator import EmulatorSpec, start_emulated_rig

            fields = dict(spec.rig.emulator)
            pitch = fields.pop("pitch_m")
            geometry = spec.geometry if pitch is None else dataclasses.replace(spec.geometry, pitch=pitch)
            try:
                emulator = EmulatorSpec(geometry=geometry, **fields)
            except ValueError as exc:
                raise ValueError(f"rig.emulator: {_one_line(exc)}") from None
            started.append(start_emulated_rig(emulator))
            spec = with_address(spec, started[-1].address)
        RigChip(spec.geometry, self._connect(spec), spec.rig.settings)  # checks SLMs and camera; takes no frame
        return spec

    def _connect(self, spec: ChipSpec):
        """The rig's slmsuite clients; an unreachable rig or an unknown hardware name is one line."""
        rig = spec.rig
        try:
            instruments = connect_rig(rig.address, rig.roles, rig.connect_timeout_s)
        except RigUnreachable as exc:
            raise ValueError(
                f"{_one_line(exc)}; start ffm-rig serve there (a lab PC: through an SSH tunnel) or correct "
                "rig.address, or set rig.address=null for an emulated rig"
            ) from None
        except ValueError as exc:
            raise ValueError(f"{_one_line(exc)}; set rig.hardware.<role> to the server's names") from None
        if rig.settle_s is not None:
            for role in SLM_ROLES:
                slm = getattr(instruments, role)
                if slm is not None:
                    slm.settle_time_s = float(rig.settle_s)
        return instruments

    def claim(self, spec: ChipSpec) -> Claim | None:
        address = spec.rig.address if spec.rig is not None else None
        if address is None:
            return None
        name = f"rig@{address}"
        return Claim(
            name,
            f"rig {address} is held by another run (Ray actor {name} in namespace {CLAIMS_NAMESPACE}); "
            "wait for that run to end or stop it, or point rig.address at another rig",
        )

    # -- the chip in its actor ----------------------------------------------------------------------

    def make_chips(self, spec, backend, relay_input: bool = False) -> tuple:
        """Connect to the rig, check it, calibrate it against the twin; returns (rig chip, twin)."""
        if spec.rig is None or spec.rig.address is None:
            raise ValueError(f"chip={self.kind}: chip {spec.index} has no rig address (the driver attaches rigs)")
        g = spec.geometry
        twin = DigitalTwin(g, backend(), relay_input=True)  # the rig loads its input onto the first layer
        chip = RigChip(g, self._connect(spec), spec.rig.settings, backend())
        chip.calibrate(twin)
        return chip, twin

    def make_twin(self, spec, backend):
        """The twin alone, no rig connection (the logged model's inference)."""
        return DigitalTwin(spec.geometry, backend(), relay_input=True)

    def calibrate(self, chip, twin):
        raise ValueError(f"chip={self.kind} calibrates itself when it starts; set chip.calibrate_registration=false")
