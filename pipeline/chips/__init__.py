"""The registry of chip systems: one adapter per system, registered by kind.

Adding a chip system touches only this package (an adapter module and its entry in
:data:`CHIPS`), its optics subpackage, its ``conf/chip/*.yaml`` and its tests. Nothing
outside this package compares chip kinds: it asks :func:`system` (or :func:`system_of` for
a built :class:`ChipSpec`) and uses the adapter's answers.
"""

from __future__ import annotations

from pipeline.chips.base import (
    ChipKnobs,
    ChipSpec,
    ChipSystem,
    Design,
    InitialPhases,
    Inputs,
    PhaseLayout,
)
from pipeline.chips.diffractive import Diffractive
from pipeline.chips.mesh import Mesh
from pipeline.chips.rig import Rig
from pipeline.chips.rig_sim import SimulatedRig

CHIPS: dict[str, ChipSystem] = {
    "diffractive": Diffractive(),
    "mzi": Mesh(),
    "rig": Rig(),
    "rig_sim": SimulatedRig(),
}


def system(kind: str) -> ChipSystem:
    """The adapter of chip kind ``kind``; ValueError (one line) names the known kinds."""
    try:
        return CHIPS[kind]
    except KeyError:
        raise ValueError(f"chip.kind must be one of {', '.join(CHIPS)}; got {kind!r}") from None


def system_of(spec: ChipSpec) -> ChipSystem:
    """The adapter that builds ``spec``: its kind, else the system whose geometry it carries."""
    if spec.kind is not None:
        return system(spec.kind)
    for adapter in CHIPS.values():
        if isinstance(spec.geometry, adapter.geometry_type):
            return adapter
    raise ValueError(f"no chip system has geometry {type(spec.geometry).__name__}; known: {', '.join(CHIPS)}")


def calibrating_kinds() -> tuple[str, ...]:
    """The kinds whose registration can be calibrated (``chip.calibrate_registration``)."""
    return tuple(k for k, a in CHIPS.items() if a.calibrates_registration)


def feature_kinds() -> tuple[str, ...]:
    """The kinds that take feature vectors (a task without images needs one of them)."""
    return tuple(k for k, a in CHIPS.items() if a.inputs is Inputs.FEATURES)


__all__ = [
    "CHIPS",
    "ChipKnobs",
    "ChipSpec",
    "ChipSystem",
    "Design",
    "InitialPhases",
    "Inputs",
    "PhaseLayout",
    "calibrating_kinds",
    "feature_kinds",
    "system",
    "system_of",
]
