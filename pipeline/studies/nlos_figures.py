"""Metrics and pictures of the NLOS imaging study (through the tracker)."""

from __future__ import annotations

import numpy as np

from pipeline.reports import figures  # noqa: F401  (selects the Agg backend)

METHODS = ("initial", "ffm", "annealing", "ridge")
SETS = ("five", "seven")
LABELS = {"initial": "initial mask", "ffm": "FFM", "annealing": "annealing (Zernike)", "ridge": "ridge (digital)"}


def _row(seed, method: str, res: dict) -> dict:
    m = res["methods"][method]
    row = {"seed": seed, "method": method, "camera_frames": int(m.get("frames", 0))}
    for name in SETS:
        row[f"ssim_{name}"] = m["metrics"][name]["ssim"]
        row[f"psnr_db_{name}"] = m["metrics"][name]["psnr_db"]
    if method in res.get("classification", {}):
        row["digit_accuracy"] = res["classification"][method]
    if method == "initial" and "classification" in res:
        row["digit_accuracy_unscattered"] = res["classification"]["ground_truth"]
    if method == "ffm":
        f = res["fidelity"]
        row |= {
            "fidelity_cosine_start": f["start"]["cosine"],
            "fidelity_cosine_end": f["end"]["cosine"],
            "fidelity_symmetry_cosine": f["start"]["symmetry_cosine"],
            "fidelity_transmission_cosine": f["transmission_control"]["cosine"],
            "optical_hz": res["rates"]["optical_hz"],
            "fast_optical_hz": res["rates"]["fast_optical_hz"],
        }
    if method == "ridge":
        row["digital_hz"] = res["rates"]["digital_hz"]
    return row


def log_nlos(tracker, results: dict, images: bool) -> list[dict]:
    """Per seed and method: SSIM and PSNR on the 5- and 7-object scenes, camera frames, digit
    accuracy, FFM's gradient fidelity; means over seeds; curves; figures of the first seed."""
    rows = [_row(seed, method, res) for seed, res in results.items() for method in METHODS]
    for row in rows:
        values = {k: v for k, v in row.items() if k not in ("seed", "method") and np.isfinite(v)}
        tracker.log_metrics({f"seed{row['seed']}/{row['method']}/{k}": float(v) for k, v in values.items()}, step=0)
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        keys = [k for k in sel[0] if k not in ("seed", "method")]
        tracker.log_metrics({f"{method}/{k}_mean": float(np.mean([r[k] for r in sel])) for k in keys}, step=0)
    for seed, res in results.items():
        _log_curves(tracker, seed, res)
    if images:
        first = results[next(iter(results))]
        tracker.log_figure(_reconstructions_figure(first), "figures/reconstructions.png")
        tracker.log_figure(_curves_figure(first), "figures/ssim_vs_steps.png")
        tracker.log_figure(_masks_figure(first), "figures/masks.png")
    return rows


def _log_curves(tracker, seed, res: dict) -> None:
    ffm, sa = res["ffm"], res["annealing"]
    for i, step in enumerate(ffm["record_steps"]):
        tracker.log_metrics({f"seed{seed}/curve/ffm/ssim_{k}": float(ffm["curve"][k][i]) for k in SETS}, step=int(step))
    steps = np.arange(1, len(ffm["loss"]) + 1)
    frames_per_step = ffm["frames"][-1] / max(ffm["record_steps"][-1], 1)
    for step, loss in zip(steps, ffm["loss"]):
        tracker.log_metrics({f"seed{seed}/curve/ffm/train_loss": float(loss)}, step=int(step * frames_per_step))
    for frames, loss in zip(sa["frames"], sa["loss"]):
        tracker.log_metrics({f"seed{seed}/curve/annealing/train_loss": float(loss)}, step=int(frames))


def _reconstructions_figure(res: dict, per_set: int = 2):
    import matplotlib.pyplot as plt

    cols = [("ground truth", None)] + [(LABELS[m], m) for m in METHODS]
    scenes = [(name, i) for name in SETS for i in range(per_set)]
    fig, axes = plt.subplots(len(scenes), len(cols), figsize=(2.2 * len(cols), 2.3 * len(scenes)), squeeze=False)
    from optics.scattering.ssim import ssim

    for r, (name, i) in enumerate(scenes):
        truth = res["ground_truth"][name][i]
        for c, (title, method) in enumerate(cols):
            img = truth if method is None else res["methods"][method]["images"][name][i]
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            label = title if method is None else f"{title}\nSSIM {float(ssim(img, truth)):.2f}"
            ax.set_title(label if r == 0 or method is not None else "", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{name}-object scene {i}", fontsize=8)
    fig.suptitle("unseen multi-object scenes behind the wall (camera frames, auto-exposed)", fontsize=9)
    fig.tight_layout()
    return fig


def _curves_figure(res: dict):
    import matplotlib.pyplot as plt

    ffm, sa = res["ffm"], res["annealing"]
    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    for name in SETS:
        ax_s.plot(ffm["record_steps"], ffm["curve"][name], "o-", ms=3, label=f"FFM, {name}-object scenes")
        ax_s.axhline(res["methods"]["annealing"]["metrics"][name]["ssim"], ls="--", lw=1, color="grey")
    ax_s.set_xlabel("FFM step (9 scenes, 18 camera frames per step)")
    ax_s.set_ylabel("SSIM on unseen scenes (noise-free evaluation)")
    ax_s.set_title("dashed: annealing at the same frames", fontsize=9)
    ax_s.legend(fontsize=8)
    frames_per_step = ffm["frames"][-1] / max(ffm["record_steps"][-1], 1)
    ax_l.plot(frames_per_step * np.arange(1, len(ffm["loss"]) + 1), ffm["loss"], label="FFM (measured)")
    ax_l.plot(sa["frames"], sa["loss"], label="annealing (best so far)")
    ax_l.set_xlabel("camera frames")
    ax_l.set_ylabel("training loss 1 - SSIM (single-object scenes)")
    ax_l.legend(fontsize=8)
    for ax in (ax_s, ax_l):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _masks_figure(res: dict):
    import matplotlib.pyplot as plt

    masks = [(LABELS[m], res["methods"][m]["phases"]) for m in ("initial", "ffm", "annealing")]
    fig, axes = plt.subplots(1, len(masks), figsize=(3.4 * len(masks), 3.2))
    for ax, (title, phases) in zip(axes, masks):
        im = ax.imshow(np.mod(phases, 2 * np.pi), cmap="twilight", vmin=0, vmax=2 * np.pi)
        ax.set_title(f"{title} mask (rad)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    return fig
