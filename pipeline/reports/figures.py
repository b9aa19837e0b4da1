"""Pictures a researcher wants in the MLflow UI (matplotlib, Agg; figures returned, not shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.chips import PhaseLayout


def phase_masks(phases: np.ndarray, title: str, layout: PhaseLayout):
    """Commanded phase modulo 2 pi, drawn as the chip system lays its phases out (``plan.layout``):
    one panel per layer (planes), or one (columns, modes) panel (an MZI mesh)."""
    layout = PhaseLayout(layout)
    return _phase_columns(phases, title) if layout == PhaseLayout.COLUMNS else _phase_planes(phases, title)


def _phase_columns(phases: np.ndarray, title: str):
    """One panel: shifter columns along x, modes along y."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * phases.shape[0]), 3.2))
    im = ax.imshow(np.mod(phases, 2 * np.pi).T, cmap="twilight", vmin=0, vmax=2 * np.pi, aspect="auto")
    ax.set_xlabel("shifter column (data pass order)")
    ax.set_ylabel("mode")
    fig.colorbar(im, ax=ax, label="phase (rad)")
    fig.suptitle(title)
    return fig


def _phase_planes(phases: np.ndarray, title: str):
    """One panel per modulation plane."""
    n_layers = phases.shape[0]
    fig, axes = plt.subplots(1, n_layers, figsize=(2.6 * n_layers, 2.8), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        im = ax.imshow(np.mod(phases[layer], 2 * np.pi), cmap="twilight", vmin=0, vmax=2 * np.pi)
        ax.set_title(f"layer {layer + 1}")
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="phase (rad)")
    fig.suptitle(title)
    return fig


def learning_curves(history: dict[str, list[tuple[int, float]]], title: str):
    """Each metric against round (train loss, accuracies)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, points in sorted(history.items()):
        if not points:
            continue
        x, y = zip(*points)
        (ax_loss if "loss" in name else ax_acc).plot(x, y, label=name, marker="." if len(x) < 30 else None)
    ax_loss.set_xlabel("round")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: np.ndarray, title: str):
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(
            j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > confusion.max() / 2 else "black"
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def detector_images(images: np.ndarray, regions: np.ndarray, title: str):
    """Detected intensity for a few test samples, detector regions outlined."""
    k = len(images)
    fig, axes = plt.subplots(1, k, figsize=(2.4 * k, 2.6), squeeze=False)
    for img, ax in zip(images, axes[0]):
        ax.imshow(img, cmap="inferno")
        ax.contour(regions >= 0, levels=[0.5], colors="cyan", linewidths=0.5)
        ax.axis("off")
    fig.suptitle(title)
    return fig
