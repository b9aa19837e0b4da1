"""The rig's roles and the slmsuite driver that plays each one (``ffm-rig serve --config``).

A physical FFM rig (Xue et al., *Nature* 632, 280, 2024) has a field loader (an amplitude SLM
and a phase SLM), the design mask (by default shown on the loader's phase SLM) and a
holographic camera, optionally a second (intensity) camera. A config file maps each role to
an slmsuite driver and the keyword arguments of its constructor::

    field_amplitude: {driver: meadowlark, kwargs: {slm_number: 1}}
    field_phase:     {driver: hamamatsu, kwargs: {serialNumber: "..."}}
    camera:          {driver: flir, kwargs: {serial: "..."}}

Each hardware object is named after its role (what ``RemoteSLM(name=...)`` asks the server
for) unless ``kwargs`` gives a ``name``. A keyword value ``{role: <role>}`` is replaced by the
object built for that role (slmsuite's ``SimulatedCamera(slm=...)`` takes its SLM). Drivers are
imported only when built, so a config naming a vendor whose SDK is absent still loads.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
from collections.abc import Mapping
from typing import Any

SLM_ROLES = ("field_amplitude", "field_phase", "design_phase")
CAMERA_ROLES = ("camera", "intensity_camera")
ROLES = SLM_ROLES + CAMERA_ROLES
REQUIRED_ROLES = ("field_amplitude", "field_phase", "camera")

_SLMS = "slmsuite.hardware.slms."
_CAMERAS = "slmsuite.hardware.cameras."
# short name -> {"slm" | "camera": dotted class}; the emulated rig is served with `ffm-rig serve --emulated`
DRIVERS: dict[str, dict[str, str]] = {
    "meadowlark": {"slm": _SLMS + "meadowlark.Meadowlark"},
    "hamamatsu": {"slm": _SLMS + "hamamatsu.Hamamatsu"},
    "holoeye": {"slm": _SLMS + "holoeye.Holoeye"},
    "santec": {"slm": _SLMS + "santec.Santec"},
    "thorlabs": {"slm": _SLMS + "screenmirrored.ScreenMirrored"},  # slmsuite drives Thorlabs' Exulus as a display
    "screenmirrored": {"slm": _SLMS + "screenmirrored.ScreenMirrored"},
    "texasinstruments": {"slm": _SLMS + "texasinstruments.PLM"},
    "simulated_slm": {"slm": _SLMS + "simulated.SimulatedSLM"},
    "flir": {"camera": _CAMERAS + "flir.FLIR"},
    "basler": {"camera": _CAMERAS + "basler.Basler"},
    "thorlabs_camera": {"camera": _CAMERAS + "thorlabs.ThorCam"},
    "alliedvision": {"camera": _CAMERAS + "alliedvision.AlliedVision"},
    "imagingsource": {"camera": _CAMERAS + "imagingsource.ImagingSource"},
    "instrumental": {"camera": _CAMERAS + "instrumental.Instrumental"},
    "mindvision": {"camera": _CAMERAS + "mindvision.MindVision"},
    "mmcore": {"camera": _CAMERAS + "mmcore.MMCore"},
    "pylablib": {"camera": _CAMERAS + "pylablib.PyLabLib"},
    "xenics": {"camera": _CAMERAS + "xenics.Cheetah640"},
    "webcam": {"camera": _CAMERAS + "webcam.Webcam"},
    "simulated_camera": {"camera": _CAMERAS + "simulated.SimulatedCamera"},
}


def _kind(role: str) -> str:
    return "slm" if role in SLM_ROLES else "camera"


_A_KIND = {"slm": "an SLM", "camera": "a camera"}


def _known(kind: str) -> str:
    return ", ".join(sorted(name for name, classes in DRIVERS.items() if kind in classes))


@dataclasses.dataclass(frozen=True)
class DriverSpec:
    """One role's driver: a short name from :data:`DRIVERS` and its constructor's keyword arguments."""

    driver: str
    kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.driver not in DRIVERS:
            raise ValueError(f"driver '{self.driver}' is unknown; use one of: {', '.join(sorted(DRIVERS))}")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ValueError(f"{self.driver}.kwargs must be a mapping of argument names to values")

    def class_path(self, role: str) -> str:
        """The dotted slmsuite (or emulator) class that plays ``role``."""
        kind = _kind(role)
        if kind not in DRIVERS[self.driver]:
            known = _known(kind)
            raise ValueError(f"{role}: driver '{self.driver}' is not {_A_KIND[kind]} driver; use one of: {known}")
        return DRIVERS[self.driver][kind]


@dataclasses.dataclass(frozen=True)
class RigHardware:
    """Role -> :class:`DriverSpec`; ``design_phase`` defaults to the loader's phase SLM (Xue et al.)."""

    field_amplitude: DriverSpec
    field_phase: DriverSpec
    camera: DriverSpec
    design_phase: DriverSpec | None = None
    intensity_camera: DriverSpec | None = None

    def __post_init__(self):
        for role, spec in self.specs().items():
            spec.class_path(role)  # an SLM driver for an SLM role, a camera driver for a camera role
        names = self.served_names()
        clash = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
        if clash:
            raise ValueError(f"hardware name '{clash[0]}' is used twice; give each role's kwargs.name its own")

    def specs(self) -> dict[str, DriverSpec]:
        """Role -> spec, in :data:`ROLES` order, for the roles given."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}

    def served_names(self) -> dict[str, str]:
        """Role -> the server's hardware name, for the roles that have their own device."""
        return {role: str(spec.kwargs.get("name") or role) for role, spec in self.specs().items()}

    def names(self) -> dict[str, str]:
        """Every role -> the server hardware name a client asks for (``design_phase`` included)."""
        names = self.served_names()
        names.setdefault("design_phase", names["field_phase"])
        return names

    @classmethod
    def from_mapping(cls, mapping: Any) -> RigHardware:
        """Parse ``{role: {driver: str, kwargs: {...}}}``; one-line ValueError naming any bad field."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"the rig config must map roles ({', '.join(ROLES)}) to drivers")
        unknown = sorted(set(mapping) - set(ROLES))
        if unknown:
            raise ValueError(f"role '{unknown[0]}' is unknown; use one of: {', '.join(ROLES)}")
        missing = [role for role in REQUIRED_ROLES if role not in mapping]
        if missing:
            raise ValueError(f"role '{missing[0]}' is missing; a rig needs {', '.join(REQUIRED_ROLES)}")
        return cls(**{role: _spec(role, entry) for role, entry in mapping.items()})


def _spec(role: str, entry: Any) -> DriverSpec:
    if isinstance(entry, str):
        entry = {"driver": entry}
    if not isinstance(entry, Mapping) or "driver" not in entry:
        known = _known(_kind(role))
        raise ValueError(f"{role} must be a mapping with a 'driver' (one of: {known}) and optional 'kwargs'")
    driver = str(entry["driver"])
    if driver not in DRIVERS:
        raise ValueError(f"{role}: driver '{driver}' is unknown; use one of: {_known(_kind(role))}")
    extra = sorted(set(entry) - {"driver", "kwargs"})
    if extra:
        raise ValueError(f"{role}.{extra[0]} is unknown; a role has 'driver' and 'kwargs' (name goes in kwargs)")
    kwargs = entry.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{role}.kwargs must map argument names to values, got {type(kwargs).__name__}")
    return DriverSpec(driver, dict(kwargs))


def load_hardware_config(path: str | pathlib.Path) -> RigHardware:
    """Read a rig config (YAML, or JSON for a ``.json`` file) into a :class:`RigHardware`."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path} ({exc.strerror}); give a YAML or JSON file") from None
    try:
        if path.suffix.lower() == ".json":
            mapping = json.loads(text)
        else:
            import yaml

            mapping = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise ValueError(f"--config: {path} is not valid JSON ({exc}); fix the file") from None
    except Exception as exc:  # noqa: BLE001 -- yaml.YAMLError, whose module is imported lazily
        line = " ".join(str(exc).split())
        raise ValueError(f"--config: {path} is not valid YAML ({line}); fix the file") from None
    return RigHardware.from_mapping(mapping)


def _import_class(role: str, spec: DriverSpec) -> type:
    module, _, name = spec.class_path(role).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise RuntimeError(
            f"{role}: driver '{spec.driver}' cannot be imported: module '{missing}' is missing; "
            f"install its vendor SDK on this machine (docs/rig.md)"
        ) from None


def _resolve(role: str, kwargs: dict, built: dict[str, Any]) -> dict:
    """Replace each ``{role: <role>}`` keyword value by the object built for that role."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, Mapping) and set(value) == {"role"}:
            if value["role"] not in built:
                raise ValueError(
                    f"{role}.kwargs.{key} refers to role '{value['role']}', which is not built before {role}; "
                    f"refer to one of: {', '.join(built) or 'none'}"
                )
            value = built[value["role"]]
        out[key] = value
    return out


def _construct(role: str, spec: DriverSpec, built: dict[str, Any]) -> Any:
    cls = _import_class(role, spec)
    kwargs = _resolve(role, spec.kwargs, built)
    kwargs.setdefault("name", role)
    try:
        return cls(**kwargs)
    except ImportError as exc:  # a driver that imports its SDK when opened (slmsuite's FLIR, Basler, ...)
        what = f"needs module '{exc.name}'" if exc.name else "cannot open: " + " ".join(str(exc).split()).rstrip(".")
        raise RuntimeError(f"{role}: driver '{spec.driver}' {what}; install its vendor SDK") from None
    except Exception as exc:  # noqa: BLE001 -- any driver's failure to open becomes one line
        line = " ".join(str(exc).split()) or type(exc).__name__
        raise RuntimeError(f"{role}: driver '{spec.driver}' failed to open: {line}") from None


def build_hardware(config: RigHardware | Mapping | str | pathlib.Path) -> list:
    """Open every role's device (in :data:`ROLES` order); on a failure close those already open.

    ``config`` is a :class:`RigHardware`, its mapping form, or the path of a config file. Returns
    the hardware objects for slmsuite's ``Server``, each named as :meth:`RigHardware.names` says.
    """
    if isinstance(config, (str, pathlib.Path)):
        config = load_hardware_config(config)
    elif not isinstance(config, RigHardware):
        config = RigHardware.from_mapping(config)
    built: dict[str, Any] = {}
    try:
        for role, spec in config.specs().items():
            built[role] = _construct(role, spec, built)
    except BaseException:
        close_hardware(list(built.values()))
        raise
    return list(built.values())


def close_hardware(hardware: list) -> None:
    """Close each object that has ``close()`` (in reverse order); a failure to close is not raised."""
    for hw in reversed(hardware):
        close = getattr(hw, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 -- closing the rest matters more than one driver's complaint
                pass
