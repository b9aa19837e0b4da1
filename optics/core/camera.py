"""The measured side of a simulated system: one noisy pass, written once for every system.

A :class:`Camera` holds the :class:`~optics.core.measurement.MeasurementSpec` and the
system's seed. Each pass it

1. keys the noise with the system's seed (``PassKey(round, pass, samples, seed)``),
2. draws one residual reference phase ``exp(i theta)`` (B, 1, 1) for the whole pass,
3. measures each tap's complex field holographically, keyed by its tap id (layer index or
   :class:`~optics.core.measurement.Tap`), and
4. on a data pass, measures the detected intensity ``|y|^2`` (shot, read noise, ADC).

On an error pass the field travels with unit power per sample, so the noise is scaled by
the error's norm ``s_b = max(sqrt(sum_p |e_bp|^2), 1e-30)`` (normalised amplitude units).
Noise streams are keyed, so the order of the taps does not change any value; it is kept
fixed anyway (reference phase, then the taps in the given order, then the intensity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from optics.core.measurement import MeasurementSpec, PassKey, measure_field_, measure_intensity, reference_rotation

#: ``measure(field, spec, key, tap, backend, scale, rotation)``: measure one tap in place
Measure = Callable[..., None]


@dataclass(frozen=True)
class Camera:
    """Noisy measurements of one simulated system (``spec``, ``seed``, ``backend``)."""

    spec: MeasurementSpec
    seed: int
    backend: object

    def keyed(self, key: PassKey) -> PassKey:
        """The caller's key with this system's seed filled in."""
        return replace(key, seed=self.seed)

    def error_scale(self, error):
        """``s_b = max(sqrt(sum_p |e_bp|^2), 1e-30)`` (B, 1, 1): the error's amplitude per sample."""
        xp = self.backend.xp
        power = (error * error.conj()).real.sum(axis=tuple(range(1, error.ndim)))
        return xp.maximum(xp.sqrt(power), 1e-30).reshape(-1, 1, 1)

    def fields_(self, key: PassKey, taps: Iterable, scale=None, measure: Measure = measure_field_) -> None:
        """Measure every ``(field, tap)`` in place with one reference phase for the pass (keyed ``key``)."""
        if self.spec.noiseless:
            return
        rotation = reference_rotation(self.spec, key, self.backend)
        for field, tap in taps:
            measure(field, self.spec, key, tap, self.backend, scale, rotation)

    def data_pass_taps(self, key: PassKey, taps: Iterable, intensity, measure: Measure = measure_field_):
        """Measure a data pass: the ``(field, tap)`` pairs in place; returns the detected ``intensity``."""
        key = self.keyed(key)
        if self.spec.noiseless:
            return intensity
        self.fields_(key, taps, measure=measure)
        return measure_intensity(intensity, self.spec, key, self.backend)

    def error_pass_taps(self, key: PassKey, error, taps: Iterable, measure: Measure = measure_field_) -> None:
        """Measure a forward-only error pass of ``error`` (B, *plane) sent at unit power, in place."""
        key = self.keyed(key)
        if not self.spec.noiseless:
            self.fields_(key, taps, self.error_scale(error), measure)

    def detected(self, key: PassKey, intensity):
        """The camera's reading of ``intensity`` (B, *plane): shot and read noise, ADC."""
        return measure_intensity(intensity, self.spec, self.keyed(key), self.backend)
