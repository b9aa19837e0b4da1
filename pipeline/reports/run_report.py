"""What a training run logs for the reports: the plan's physical quantities (MLflow params
``plan.*``), the end-of-run artifacts and the terminal summary (through the tracker only)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile

import numpy as np

from pipeline.chips import system_of
from pipeline.chips.base import Inputs
from pipeline.reports import figures
from pipeline.reports.hidden import hidden_params, images_of

# MLflow params each training job logs from its plan (:func:`plan_params`); reports read these
# instead of rebuilding a chip from config strings
DETECTOR_PIXELS = "plan.detector_pixels"  # detector pixels of one chip (all its detectors)
WAVELENGTH = "plan.geometry.wavelength"  # metres
GRID_N = "plan.geometry.n"  # pixels per side of the chip's planes
N_LAYERS = "plan.geometry.n_layers"
N_CLASSES = "plan.geometry.n_classes"
QUANTUM_EFFICIENCY = "plan.measurement.quantum_efficiency"


def plan_params(plan) -> dict[str, str]:
    """The plan's physical quantities as MLflow params: every field of the chip geometry (and its
    layer count), the detector pixels of a chip (the mean over chips when they differ, as with
    topology=width), every field of the chips' measurement spec, and the number of chips."""
    g = plan.geometry
    out = {f"plan.geometry.{k}": v for k, v in _fields(g).items()} | {N_LAYERS: g.n_layers}
    pixels = [p for c in plan.chips if (p := system_of(c).detector_pixels(c.geometry)) is not None]
    if pixels:
        out[DETECTOR_PIXELS] = pixels[0] if len(set(pixels)) == 1 else sum(pixels) / len(pixels)
    out |= {f"plan.measurement.{k}": v for k, v in _fields(plan.chips[0].measurement).items()}
    out["plan.chips"] = len(plan.chips)
    out |= physics_params(g)
    return {k: str(v) for k, v in out.items()}


# the geometry's quantities under names that carry their units (what a reader of the UI needs)
PHYSICS = {
    "pitch": "physics.pitch_m",
    "wavelength": "physics.wavelength_m",
    "distance": "physics.distance_m",
    "n": "physics.grid_px",
    "n_layers": "physics.layers",
    "detector_px": "physics.detector_side_px",
    "object_px": "physics.object_px",
}


def physics_params(geometry) -> dict:
    """The resolved geometry's physical quantities with units in their names (those it has)."""
    return {
        name: getattr(geometry, field) for field, name in PHYSICS.items() if getattr(geometry, field, None) is not None
    }


def _fields(spec) -> dict:
    """A typed spec's fields (None ones left out: MLflow shows them as 'None' strings otherwise)."""
    if not dataclasses.is_dataclass(spec):
        return {}
    return {f.name: v for f in dataclasses.fields(spec) if (v := getattr(spec, f.name)) is not None}


def log_final_artifacts(sess, state, test: dict) -> None:
    """Resolved config, phases (and the twin model), pictures, and each chip's hidden imperfections
    (an .npz, params ``hidden.<chip>.*`` and a figure)."""
    tr, cfg, geometry = sess.tracker, sess.cfg, sess.plan.geometry
    tr.log_text(json.dumps(dataclasses.asdict(cfg), indent=2), "config/resolved.json")
    tr.log_arrays(
        "phases/final_phases.npz", {f"{g}/{k}": v for g, p in state.best_params.items() for k, v in p.items()}
    )
    revealed = sess.topo.reveal(state.alive)
    for name, arrays in revealed.items():
        tr.log_arrays(f"hidden/{name}_imperfections.npz", arrays)
        tr.log_params(hidden_params(name, arrays, getattr(geometry, "distance", None)))
    if cfg.tracking.log_model:
        log_twin_model(sess, state)
    tr.log_text("\n".join(tr.events) + "\n", "events.txt")
    if cfg.tracking.log_images:
        _log_figures(sess, state, test, revealed)


def _log_figures(sess, state, test: dict, revealed: dict) -> None:
    tr, pitch = sess.tracker, getattr(sess.plan.geometry, "pitch", None)
    for g, p in state.best_params.items():
        title = f"trained phase masks ({g})"
        tr.log_figure(figures.phase_masks(p["phase"], title, sess.plan.layout, pitch), f"figures/phase_masks_{g}.png")
    curves = figures.learning_curves(sess.history, f"learning curves: {sess.cfg.trainer.kind} training")
    tr.log_figure(curves, "figures/learning_curves.png")
    for name, arrays in revealed.items():
        if maps := images_of(arrays):
            title = f"{name}: hidden imperfections (not seen in training)"
            tr.log_figure(figures.hidden_maps(maps, title, pitch), f"figures/hidden_{name}.png")
    regions = sess.topo.detector_regions(state.alive)
    labels = sess.split.test.labels if sess.split is not None else None
    for name, r in test.items():
        tr.log_figure(
            figures.confusion_matrix(r.confusion, f"{name}: test accuracy {r.accuracy:.3f}"),
            f"figures/confusion_{name}.png",
        )
        if r.examples is not None and regions is not None:
            title = f"{name}: detected intensity of the first test samples"
            fig = figures.detector_images(r.examples, regions, title, labels, pitch)
            tr.log_figure(fig, f"figures/detector_examples_{name}.png")


def log_epoch_images(sess, state) -> None:
    """The phases at the end of each epoch as images ``phase_masks_<group>`` at step = epochs done."""
    if sess.cfg.tracking.log_images:
        for g, p in state.params.items():
            sess.tracker.log_image(
                f"phase_masks_{g}", figures.phase_image(p["phase"], sess.plan.layout), state.epoch + 1
            )


def log_twin_model(sess, state) -> None:
    """The best phases on the digital twin as an MLflow model (``runs:/<id>/model``), for runs
    whose chips share one set of masks and take images (a feature chip's inputs are a
    reduction of the task fitted on its split, which the model does not carry)."""
    if sess.tracker.run_id is None:
        return
    if len(state.best_params) != 1 or system_of(sess.plan.chips[0]).inputs != Inputs.IMAGES:
        sess.tracker.event("no model logged: it needs one set of masks shared by the chips and image inputs", False)
        return
    from pipeline.tracking.twin_model import save_twin_model

    (phases,) = state.best_params.values()
    with tempfile.TemporaryDirectory() as tmp:
        model = save_twin_model(os.path.join(tmp, "model"), sess.plan.chips[0], dict(phases))
        sess.tracker.log_model(model, sess.cfg.tracking.register_model)


def dataset_input(cfg, split) -> dict:
    """The task's split as an MLflow dataset input: name, a digest of its arrays, where it came
    from, and its sizes (the Datasets panel of the run page)."""
    h = hashlib.sha256()
    for part in (split.train, split.val, split.test):
        for arr in (part.ids, part.labels, part.images):
            h.update(np.ascontiguousarray(arr).view(np.uint8))
    t = cfg.task
    source = os.path.abspath(t.data_dir) if t.data_dir else f"ffm-optics task={t.name}"
    profile = {"train": len(split.train), "val": len(split.val), "test": len(split.test), "classes": split.n_classes}
    profile |= {"val_fraction": t.val_fraction, "test_fraction": t.test_fraction, "split_seed": t.split_seed}
    return {
        "name": t.name,
        "digest": h.hexdigest()[:16],
        "source_type": "local" if t.data_dir else "code",
        "source": json.dumps({"uri": source}),
        "profile": json.dumps(profile),
        "context": "training",
    }


def summary_accuracy(summary: dict) -> float:
    """A run's test accuracy from its summary: the mean over its chips (the twin's for ``ideal``)."""
    if summary["trainer"] == "ideal":
        return float(summary["twin_test_accuracy"])
    chips = [c["test_accuracy"] for c in summary["chips"].values()]
    return float(sum(chips) / len(chips))


def results_table(summary: dict) -> str:
    """The final test accuracy per chip and on the twin, as a markdown table (the run's description)."""
    lines = ["| tested on | test accuracy |", "|---|---|"]
    for name, chip in summary["chips"].items():
        where = "twin" if summary["deployed_on"] == "twin" else name
        lines.append(f"| {where} | {chip['test_accuracy']:.3f} |")
    lines.append(f"| the same masks on the digital twin | {summary['twin_test_accuracy']:.3f} |")
    lines.append("")
    lines.append(f"{summary['rounds']} rounds, {summary['epochs']} epochs in {summary['wall_seconds']:.0f} s.")
    if summary["dropped_chips"]:
        lines.append(f"Dropped chips: {summary['dropped_chips']}.")
    return "\n".join(lines)


def print_summary(summary: dict, tracker) -> None:
    lines = [f"\n{summary['trainer']} training done in {summary['wall_seconds']:.0f} s, {summary['rounds']} rounds"]
    for name, chip in summary["chips"].items():
        seed = f" (seed {chip['seed']})" if "seed" in chip else ""
        where = "twin" if summary["deployed_on"] == "twin" else f"{name}{seed}"
        lines.append(f"  test accuracy on {where}: {chip['test_accuracy']:.3f}")
    lines.append(f"  same masks on the digital twin: {summary['twin_test_accuracy']:.3f}")
    if summary["dropped_chips"]:
        lines.append(f"  dropped chips: {summary['dropped_chips']}")
    lines.append(f"  summary: {summary['output_dir']}/summary.json")
    if summary["run_id"]:
        lines.append(f"  MLflow run {summary['run_id']}:  {tracker.ui_command()}")
    print("\n".join(lines), flush=True)
