"""What a measure-and-reload rig costs: frames, SLM writes and seconds per sample.

One hop of one sample (:class:`~optics.rig.chip.RigChip`): one amplitude-SLM write, then
for each of the scheme's ``K`` phase steps one phase-SLM write and ``averaging`` frames
(off-axis holography: ``K = 1``). Each write waits ``settle_s``; each frame takes
``max(exposure_s, 1 / frame_rate_hz)``; each instrument call costs ``transport_s`` (the
link to the rig's PC). The design SLM is written once per hop per batch. So, per sample::

    frames  = H K a
    writes  = H (1 + K) + H_d / B
    seconds = writes settle + frames max(t_exp, 1 / f) + (frames + writes) transport

with ``H`` hops: ``L`` for inference, ``2 L`` for a training sample (data and error pass),
``H_d`` design writes per batch (``H``, or 0 when the loader's phase SLM carries the design)
and ``B`` the batch size. Calibrations (a few dozen frames at start, one plane-wave probe
per pass when the drift is due) are not included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optics.rig.holography import phase_steps


@dataclass(frozen=True)
class RigTiming:
    """The timing model of one rig (module docstring)."""

    scheme: str = "3-step"
    settle_s: float = 0.15
    frame_rate_hz: float = 30.0
    exposure_s: float = 0.01
    averaging: int = 1
    transport_s: float = 0.0
    separate_design_slm: bool = True

    @property
    def steps(self) -> int:
        return len(phase_steps(self.scheme))

    @property
    def frame_s(self) -> float:
        return max(self.exposure_s, 1.0 / self.frame_rate_hz)

    def per_sample(self, hops: int, batch: int) -> dict[str, float]:
        """``frames``, ``slm_writes`` and ``seconds`` per sample for ``hops`` hops in batches of ``batch``."""
        frames = hops * self.steps * self.averaging
        writes = hops * (1 + self.steps) + (hops / batch if self.separate_design_slm else 0.0)
        seconds = writes * self.settle_s + frames * self.frame_s + (frames + writes) * self.transport_s
        return {"frames": float(frames), "slm_writes": float(writes), "seconds": seconds}

    def training_sample(self, n_layers: int, batch: int) -> dict[str, float]:
        """One training sample: its data pass and its error pass (``2 L`` hops)."""
        return self.per_sample(2 * n_layers, batch)

    def hours_per_epoch(self, samples: int, n_layers: int, batch: int) -> float:
        """Rig hours for one pass over ``samples`` training samples."""
        return samples * self.training_sample(n_layers, batch)["seconds"] / 3600.0


#: Xue et al. 2024's rig as their lab code drives it: 3-step phase shifting, 0.15 s settle, 30 fps
PAPER_RIG = RigTiming()
#: a fast rig: single-shot off-axis holography, a 1 kHz SLM (about 1 ms to settle), a 1 kHz camera
FAST_RIG = RigTiming(scheme="off-axis", settle_s=1e-3, frame_rate_hz=1000.0, exposure_s=0.5e-3)


def timing_table(rigs: dict[str, RigTiming], n_layers: int, batch: int, epochs: dict[str, int]) -> list[dict]:
    """Rows for the README: per rig, frames / writes / seconds per training sample and hours per epoch."""
    rows = []
    for name, rig in rigs.items():
        cost = rig.training_sample(n_layers, batch)
        row = {"rig": name, **{k: cost[k] for k in ("frames", "slm_writes", "seconds")}}
        for task, samples in epochs.items():
            row[f"hours_per_epoch_{task}"] = rig.hours_per_epoch(samples, n_layers, batch)
        rows.append(row)
    return rows


def settle_share(rig: RigTiming, n_layers: int, batch: int) -> float:
    """Fraction of a training sample's time spent waiting for SLMs to settle."""
    cost = rig.training_sample(n_layers, batch)
    return cost["slm_writes"] * rig.settle_s / cost["seconds"] if cost["seconds"] > 0 else math.nan
