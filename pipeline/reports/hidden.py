"""A chip's hidden imperfections as numbers and a picture a researcher reads in the MLflow UI.

The chip's ``reveal()`` gives named arrays (``hidden/<chip>_imperfections.npz``, which the UI
cannot preview). Here each becomes run params ``hidden.<chip>.<name>``:

- a scalar as it is (``gamma``, ``quant_step_rad``, ``crosstalk_sigma_px``);
- plane spacings as their error against the nominal spacing, per gap, in metres
  (``distance_error_m.gap<i> = d_i - d_nominal``);
- a small array (at most 16 values: registration shifts and tilts per gap, mask offsets) value
  by value, its index in the name (``shifts_m.gap0.y``);
- a large one (phase screens, illumination envelope) as its root mean square and its largest
  magnitude: ``<name>.rms``, ``<name>.max_abs`` (screens per layer: ``phase_screens_rad.layer<l>.rms``).

The 2-D ones (screens, envelope) are drawn by :func:`hidden_figure`.
"""

from __future__ import annotations

import numpy as np

UNITS = {  # names without their unit, as the chips' hidden states call them
    "phase_screens": "phase_screens_rad",
    "quant_step": "quant_step_rad",
    "phase_offsets": "phase_offsets_rad",
    "mirror_phases": "mirror_phases_rad",
    "kappas": "coupler_angles_rad",
    "loss": "segment_transmission",
}
TITLES = {"phase_screens": "phase screen (rad)", "illumination": "illumination (amplitude)"}
SMALL = 16  # arrays up to this many values are logged value by value
AXES = ("y", "x")


def hidden_params(chip: str, arrays: dict[str, np.ndarray], nominal_distance_m: float | None) -> dict[str, float]:
    """``hidden.<chip>.<name>`` params of one chip's revealed imperfections (see the module doc)."""
    out: dict[str, float] = {}
    for name, value in sorted(arrays.items()):
        a = np.asarray(value, dtype=np.float64)
        if name == "distances" and nominal_distance_m is not None:
            out |= {f"distance_error_m.gap{i}": float(d - nominal_distance_m) for i, d in enumerate(a.ravel())}
        elif a.size == 1:
            out[UNITS.get(name, name)] = float(a.ravel()[0])
        elif a.size <= SMALL:
            out |= _each_value(UNITS.get(name, name), a)
        elif name == "phase_screens" and a.ndim == 3:
            for layer, screen in enumerate(a):
                out |= _spread(f"{UNITS[name]}.layer{layer + 1}", screen)
        else:
            out |= _spread(UNITS.get(name, name), a)
    return {f"hidden.{chip}.{k}": float(f"{v:.6g}") + 0.0 for k, v in out.items()}  # + 0.0: no -0.0


def _each_value(name: str, a: np.ndarray) -> dict[str, float]:
    """One value per entry: rows are gaps or layers; a last axis of 2 is (y, x)."""
    if a.ndim == 2 and a.shape[1] == 2:
        row = "gap" if name.startswith(("shifts", "tilts")) else "layer"
        return {f"{name}.{row}{i}.{AXES[j]}": float(a[i, j]) for i in range(a.shape[0]) for j in range(2)}
    return {f"{name}.{i}": float(v) for i, v in enumerate(a.ravel())}


def _spread(name: str, a: np.ndarray) -> dict[str, float]:
    return {f"{name}.rms": float(np.sqrt(np.mean(a**2))), f"{name}.max_abs": float(np.max(np.abs(a)))}


def images_of(arrays: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The 2-D maps among the arrays (a screen per layer, the illumination envelope), titled."""
    maps = []
    for name, value in sorted(arrays.items()):
        a = np.asarray(value, dtype=np.float64)
        if a.ndim == 3 and min(a.shape[1:]) >= 8:
            maps += [(f"{TITLES.get(name, name)}, layer {i + 1}", a[i]) for i in range(a.shape[0])]
        elif a.ndim == 2 and min(a.shape) >= 8:
            maps.append((TITLES.get(name, name), a))
    return maps
