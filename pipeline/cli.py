"""``ffm-train``: single-process training on the embedded default (digits, reference chip).

This is the composition root for now: the only place that reads command-line options
and builds objects. (The Ray/MLflow/Hydra pipeline replaces it with a Hydra app over
``conf/`` with the same name.) Writes ``summary.json`` and ``phases.npz`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from optics import __version__
from optics.backend import get_backend
from optics.chip import DigitalTwin, SimulatedChip
from optics.data import load_digits_split, load_idx
from optics.ffm import Objective
from optics.geometry import Geometry
from optics.imperfections import HardwareSpec
from optics.measurement import MeasurementSpec
from optics.optim import OptimizerSpec

from .local_train import TRAINERS, EpochLog, TrainSpec, train

GEOMETRIES = {"reference": Geometry.reference, "small": Geometry.small}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ffm-train", description=__doc__.splitlines()[0])
    p.add_argument("--trainer", choices=TRAINERS, default="ffm")
    p.add_argument("--geometry", choices=sorted(GEOMETRIES), default="reference")
    p.add_argument("--level", type=float, default=1.0, help="imperfection and noise level (0 = ideal)")
    p.add_argument("--chip-seed", type=int, default=1, help="which chip instance (hidden imperfections)")
    p.add_argument("--seed", type=int, default=0, help="data split and shuffling")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1, help="Adam step, radians")
    p.add_argument("--temperature", type=float, default=0.003, help="softmax temperature, fraction of input power")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--precision", choices=("complex64", "complex128"), default="complex64")
    p.add_argument("--data", default="digits", help="'digits' or a folder with MNIST-format IDX files")
    p.add_argument("--out", default="outputs/latest", help="output folder (summary.json, phases.npz)")
    return p.parse_args(argv)


def _print_epoch(log: EpochLog) -> None:
    fid = "" if np.isnan(log.fidelity_cosine) else f"  grad-cos {log.fidelity_cosine:.3f}"
    print(f"epoch {log.epoch + 1}: loss {log.loss:.3f}  train {log.train_accuracy:.3f}  "
          f"val {log.val_accuracy:.3f}{fid}  ({log.seconds:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # every object validates its own arguments before any training starts
        backend = get_backend(args.backend, args.precision)
        split = load_digits_split(args.seed) if args.data == "digits" else load_idx(args.data, args.seed)
        geometry = GEOMETRIES[args.geometry](n_classes=split.n_classes)
        spec = TrainSpec(trainer=args.trainer, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         objective=Objective(temperature=args.temperature), optimizer=OptimizerSpec(lr=args.lr))
        twin = DigitalTwin(geometry, backend)
        chip = SimulatedChip(geometry, HardwareSpec(level=args.level), MeasurementSpec(level=args.level),
                             seed=args.chip_seed, backend=backend)
    except (ValueError, RuntimeError) as exc:
        print(f"ffm-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"ffm-train: {args.trainer} on the {args.geometry} chip (n={geometry.n}, {geometry.n_layers} layers, "
          f"FFT {chip.props[0].n_pad}^2), level {args.level}, {len(split.train)} training samples", flush=True)
    result = train(geometry, split, spec, twin, chip, report=_print_epoch)
    where = "twin" if args.trainer == "ideal" else f"chip {args.chip_seed}"
    summary = {"trainer": args.trainer, "geometry": args.geometry, "level": args.level,
               "chip_seed": args.chip_seed, "test_accuracy": result.test_accuracy,
               "twin_test_accuracy": result.twin_test_accuracy, "epochs": args.epochs,
               "rounds": int(np.ceil(len(split.train) / args.batch_size)) * args.epochs,
               "wall_seconds": result.wall_seconds, "samples_per_second": result.samples_per_second,
               "history": [log.__dict__ for log in result.history], "version": __version__,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    np.savez(os.path.join(args.out, "phases.npz"), **result.params)
    print(f"test accuracy on {where}: {result.test_accuracy:.3f}  (same masks on the twin: "
          f"{result.twin_test_accuracy:.3f});  wall {result.wall_seconds:.0f} s;  wrote {args.out}/summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
