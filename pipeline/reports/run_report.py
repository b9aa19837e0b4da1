"""End-of-run artifacts and the terminal summary (through the tracker only)."""

from __future__ import annotations

import dataclasses
import json


def log_final_artifacts(sess, state, test: dict, figures) -> None:
    """Resolved config, phases, pictures, and each chip's hidden imperfections."""
    tr, cfg = sess.tracker, sess.cfg
    tr.log_text(json.dumps(dataclasses.asdict(cfg), indent=2), "config/resolved.json")
    tr.log_arrays(
        "phases/final_phases.npz", {f"{g}/{k}": v for g, p in state.best_params.items() for k, v in p.items()}
    )
    for name, arrays in sess.topo.reveal(state.alive).items():
        tr.log_arrays(f"hidden/{name}_imperfections.npz", arrays)
    tr.log_text("\n".join(tr.events) + "\n", "events.txt")
    if not cfg.tracking.log_images:
        return
    for g, p in state.best_params.items():
        tr.log_figure(figures.phase_masks(p["phase"], f"phase masks ({g})"), f"figures/phase_masks_{g}.png")
    tr.log_figure(figures.learning_curves(sess.history, cfg.trainer.kind), "figures/learning_curves.png")
    regions = sess.topo.detector_regions(state.alive)
    for name, r in test.items():
        tr.log_figure(
            figures.confusion_matrix(r["confusion"], f"{name}: test {r['accuracy']:.3f}"),
            f"figures/confusion_{name}.png",
        )
        if "examples" in r and regions is not None:
            tr.log_figure(
                figures.detector_images(r["examples"], regions, f"{name}: detected intensity"),
                f"figures/detector_examples_{name}.png",
            )


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
