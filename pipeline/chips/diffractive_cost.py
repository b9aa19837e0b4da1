"""The projected cost of a run of the paper's deep network (``chip.geometry=xue2024``), a note the
driver prints before any actor starts: one hop timed on this machine's CPU at the full size
(``Geometry.xue2024()``: 8 layers of 400 x 400 px on an 800 x 800 grid) and at this run's size,
scaled by the hops per training sample and the measured overhead (:mod:`optics.diffractive.cost`).
"""

from __future__ import annotations

from optics.core.backend import get_backend
from optics.diffractive.cost import HOP_OVERHEAD, hop_seconds, projected_training, training_hops
from optics.diffractive.geometry import Geometry

DAY_S = 86400.0


def cost_notes(spec, n_pad: int) -> list[str]:
    """One line for the first chip of a run with the xue2024 detector layout (else none)."""
    g = spec.geometry
    if g.detector_layout != "xue2024" or spec.index != 0 or spec.backend != "numpy":
        return []
    be = get_backend("numpy", spec.precision, spec.fft_threads or 1, spec.fft_planner)
    full = Geometry.xue2024()
    full_step = HOP_OVERHEAD * training_hops(full.n_layers) * hop_seconds(be, 2 * full.n)
    paper = projected_training(full, full_step)
    here = ""
    if (g.n_layers, n_pad) != (full.n_layers, 2 * full.n):
        here_step = HOP_OVERHEAD * training_hops(g.n_layers) * hop_seconds(be, n_pad)
        here = f"about {here_step * 1e3:.0f} ms per training sample at this run's size; "
    return [
        f"projected cost on this CPU ({be.fft_threads} FFT thread(s)): {here}at the paper's full size (8 x 400 x "
        f"400 px, 800 x 800 grid) about {full_step:.2f} s per training sample, so its 200 epochs of 10,000 images "
        f"take about {paper['total_s'] / DAY_S:.1f} days (a GPU job: chip.backend=cupy chip.num_gpus=1; "
        "docs/results/xue2024_deep.md)"
    ]
