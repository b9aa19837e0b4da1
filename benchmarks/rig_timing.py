"""What training on a rig costs: the timing model checked against an emulated rig over TCP.

Starts ``ffm-rig serve --emulated`` on 127.0.0.1, connects a ``RigChip`` through slmsuite's
``RemoteSLM`` / ``RemoteCamera``, calibrates it and runs training steps, then reports

- the frames, SLM writes and rig seconds per training sample it counted, against the
  timing model (:mod:`optics.rig.timing`) for the same rig;
- the transport cost per instrument call (JSON + zlib over TCP, this machine);
- the timing table: frames, writes and seconds per training sample, and hours per epoch
  for digits and a Fashion-MNIST-sized set, for the paper's rig (3-step, 0.15 s settle,
  30 fps) and a fast rig (off-axis single shot, a 1 kHz SLM and camera), at the small
  chip's 3 layers and the paper's 8.

Usage: ``python benchmarks/rig_timing.py [--steps 3] [--batch 16] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import machine  # noqa: E402
from optics.core import ffm  # noqa: E402
from optics.core.backend import get_backend  # noqa: E402
from optics.core.data import encode_amplitude  # noqa: E402
from optics.diffractive.chip import DigitalTwin  # noqa: E402
from optics.diffractive.geometry import Geometry  # noqa: E402
from optics.rig.chip import RigChip, RigRoles, RigSettings, connect_rig  # noqa: E402
from optics.rig.emulator import EmulatorSpec, start_emulated_rig  # noqa: E402
from optics.rig.timing import FAST_RIG, PAPER_RIG, RigTiming, timing_table  # noqa: E402

# training samples: our digits split (70 %), a Fashion-MNIST-sized set
EPOCHS = {"digits": 1257, "fashion_mnist": 60000}


def measure(steps: int, batch: int) -> dict:
    from sklearn.datasets import load_digits

    g = Geometry.small()
    digits = load_digits()
    x = encode_amplitude(digits.images[: steps * batch] / 16.0, g.n, g.object_px)
    labels = digits.target[: steps * batch]
    be = get_backend("numpy", "complex64")
    with start_emulated_rig(EmulatorSpec(geometry=g, seed=1)) as rig:
        chip = RigChip(g, connect_rig(rig.address, RigRoles(), 5.0), RigSettings(virtual_clock=True), be)
        start = time.perf_counter()
        calibrations = chip.calibrate(DigitalTwin(g, be, relay_input=True))
        calibration_wall_s = time.perf_counter() - start
        chip.program(chip.phases + 3.14159)
        before, start = chip.counters(), time.perf_counter()
        for s in range(steps):
            part = slice(s * batch, (s + 1) * batch)
            ffm.forward_only_step(chip, x[part], labels[part], ffm.Objective(), s, range(part.start, part.stop))
        wall_s = time.perf_counter() - start
        after = chip.counters()
    samples = steps * batch
    counted = {k: (after[k] - before[k]) / samples for k in ("frames", "slm_writes", "rig_seconds")}
    model = RigTiming().training_sample(g.n_layers, batch)
    calls = (after["frames"] - before["frames"]) + (after["slm_writes"] - before["slm_writes"])
    retakes = after["retakes"] - before["retakes"]  # each: one amplitude and 3 phase writes, 3 frames
    modelled_rig_s = model["seconds"] * samples + retakes * (4 * PAPER_RIG.settle_s + 3 * PAPER_RIG.frame_s)
    return {
        "geometry": "small",
        "samples": samples,
        "batch": batch,
        "counted_per_sample": counted,
        "model_per_sample": model,
        "retakes": retakes,
        "transport_s_per_call": max(after["rig_seconds"] - before["rig_seconds"] - modelled_rig_s, 0.0) / calls,
        "wall_s_per_sample": wall_s / samples,
        "calibration": {c.name: {"frames": c.frames, **c.values} for c in calibrations},
        "calibration_wall_s": calibration_wall_s,
    }


def table(batch: int) -> list[dict]:
    rows = []
    for n_layers in (3, 8):
        for row in timing_table(
            {"paper (3-step, 0.15 s, 30 fps)": PAPER_RIG, "fast (off-axis, 1 kHz)": FAST_RIG}, n_layers, batch, EPOCHS
        ):
            rows.append({"layers": n_layers, **row})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=None, help="write rig-timing.json here")
    args = parser.parse_args(argv)
    result = {"machine": machine("cpu", None, None), "measured": measure(args.steps, args.batch)}
    result["table"] = table(args.batch)
    print(json.dumps(result, indent=2))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rig-timing.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
