"""One-line input checks shared by the physics modules.

Every error names the parameter and says what would be accepted, and is raised
before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or ``ValueError`` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """``value`` as a float, or ``ValueError`` unless it is finite and >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` or ``ValueError`` listing the allowed options."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_finite(name: str, array) -> None:
    """``ValueError`` if ``array`` holds NaN or inf (works for NumPy and CuPy arrays)."""
    # np.isfinite dispatches to CuPy through __array_ufunc__, so no CuPy import is needed
    if not bool(np.isfinite(array).all()):
        raise ValueError(f"{name} contains NaN or inf; clean the input before passing it")
