"""A sweep job's key and which sweep axes are hardware: shared by the sweep runner
(:mod:`pipeline.sweeps.grid`) and the reports that read its runs back (:mod:`pipeline.reports`)."""

from __future__ import annotations

# axes that change the chip, not the twin: the twin's masks are shared across their values
HARDWARE_AXES = ("chip.level", "chip.hardware", "chip.measurement", "chip.only", "chip.calibrate_registration")


def job_key(trainer: str, point, seed: int) -> str:
    """``("ffm", (("chip.level", 1.0),), 2)`` -> ``"ffm/chip.level=1.0/seed=2"``: a child run's name and tag."""
    return "/".join([trainer, *(f"{k}={v}" for k, v in point), f"seed={seed}"])


def parse_key(key: str) -> tuple[str, tuple, int]:
    """``"ffm/chip.level=1.0/seed=2"`` -> ("ffm", (("chip.level", "1.0"),), 2)."""
    trainer, *parts = key.split("/")
    point = tuple(tuple(p.split("=", 1)) for p in parts[:-1])
    return trainer, point, int(parts[-1].split("=", 1)[1])


def twin_point(point: tuple) -> tuple:
    """The point without its hardware axes: where the twin-trained (ideal) masks of ``point`` come from."""
    return tuple((k, v) for k, v in point if not k.startswith(HARDWARE_AXES))
