"""Pictures a researcher wants in the MLflow UI (matplotlib, Agg; figures returned, not shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.chips import PhaseLayout


def phase_masks(phases: np.ndarray, title: str, layout: PhaseLayout, pitch_m: float | None = None):
    """Commanded phase modulo 2 pi, drawn as the chip system lays its phases out (``plan.layout``):
    one panel per layer (planes, in mm on the SLM given its ``pitch_m``), or one (columns,
    modes) panel (an MZI mesh)."""
    layout = PhaseLayout(layout)
    if layout == PhaseLayout.COLUMNS:
        return _phase_columns(phases, title)
    return _phase_planes(phases, title, pitch_m)


def _phase_columns(phases: np.ndarray, title: str):
    """One panel: shifter columns along x, modes along y."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * phases.shape[0]), 3.2))
    im = ax.imshow(np.mod(phases, 2 * np.pi).T, cmap="twilight", vmin=0, vmax=2 * np.pi, aspect="auto")
    ax.set_xlabel("shifter column (data pass order)")
    ax.set_ylabel("mode")
    fig.colorbar(im, ax=ax, label="phase (rad)")
    fig.suptitle(title)
    return fig


def _phase_planes(phases: np.ndarray, title: str, pitch_m: float | None = None):
    """One panel per modulation plane: each pixel's phase less its layer's circular mean, wrapped
    to (-pi, pi] (trained masks sit near their start, which a cyclic 0..2 pi map shows as one
    colour); axes in millimetres on the SLM when the pitch is known."""
    n_layers = phases.shape[0]
    fig, axes = plt.subplots(1, n_layers, figsize=(2.6 * n_layers + 0.8, 3.0), squeeze=False)
    extent = _extent_mm(phases.shape[-1], pitch_m)
    unit = np.exp(1j * phases)
    deviation = np.angle(unit * np.exp(-1j * np.angle(unit.mean(axis=(-2, -1), keepdims=True))))
    vmax = float(np.abs(deviation).max()) or np.pi
    for layer, ax in enumerate(axes[0]):
        im = ax.imshow(deviation[layer], cmap="coolwarm", vmin=-vmax, vmax=vmax, extent=extent)
        ax.set_title(f"layer {layer + 1}")
        _mm_axes(ax, extent, first=layer == 0)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="phase - layer mean (rad)")
    fig.suptitle(title)
    return fig


def phase_image(phases: np.ndarray, layout: PhaseLayout) -> np.ndarray:
    """The phases modulo 2 pi as one RGB picture (uint8, the ``twilight`` map, 0 to 2 pi): the
    layers side by side with a gap (planes), or columns by modes (an MZI mesh)."""
    wrapped = np.mod(phases, 2 * np.pi) / (2 * np.pi)
    if PhaseLayout(layout) == PhaseLayout.COLUMNS:
        tiled = wrapped.T
    else:
        gap = np.full((wrapped.shape[1], max(2, wrapped.shape[2] // 32)), np.nan)
        tiled = np.concatenate([part for layer in wrapped for part in (layer, gap)][:-1], axis=1)
    rgb = plt.get_cmap("twilight")(np.nan_to_num(tiled, nan=0.0))[..., :3]
    rgb[np.isnan(tiled)] = 1.0  # white gaps
    return (rgb * 255).astype(np.uint8)


def _extent_mm(n: int, pitch_m: float | None):
    """``imshow`` extent of an (n, n) plane centred on the axis, in mm; None: pixels."""
    if not pitch_m:
        return None
    half = n * pitch_m * 1e3 / 2
    return (-half, half, -half, half)


def _mm_axes(ax, extent, first: bool = True) -> None:
    if extent is None:
        ax.set_xlabel("x (px)")
    else:
        ax.set_xlabel("x (mm)")
        if first:
            ax.set_ylabel("y (mm)")
    ax.tick_params(labelsize=7)


def hidden_maps(maps: list[tuple[str, np.ndarray]], title: str, pitch_m: float | None = None):
    """A chip's hidden 2-D imperfections (phase screens per layer, illumination envelope), each
    with its own colour bar, in mm on the plane."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps), 3.0), squeeze=False)
    for (name, image), ax in zip(maps, axes[0]):
        extent = _extent_mm(image.shape[-1], pitch_m)
        signed = image.min() < 0  # a diverging map centred on zero; else a sequential one
        vmax = float(np.abs(image).max()) or 1.0
        limits = {"cmap": "coolwarm", "vmin": -vmax, "vmax": vmax} if signed else {"cmap": "viridis"}
        im = ax.imshow(image, extent=extent, **limits)
        ax.set_title(name, fontsize=8)
        _mm_axes(ax, extent)
        fig.colorbar(im, ax=ax, shrink=0.75)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves(history: dict[str, list[tuple[int, float]]], title: str):
    """Loss, accuracies and (when measured) gradient fidelity against round."""
    fidelity = {k: v for k, v in history.items() if k.startswith("fidelity") and v}
    curves = {k: v for k, v in history.items() if k not in fidelity and v}
    n_panels = 3 if fidelity else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 3.6), sharex=True)
    ax_loss, ax_acc = axes[0], axes[1]
    for name, points in sorted(curves.items()):
        x, y = zip(*points)
        (ax_loss if "loss" in name else ax_acc).plot(x, y, label=name, marker="." if len(x) < 30 else None)
    ax_loss.set_ylabel("training loss (batch)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    if fidelity:
        for name, points in sorted(fidelity.items()):
            x, y = zip(*points)
            axes[2].plot(x, y, marker=".", label=name)
        axes[2].set_ylabel("cosine(measured, true gradient)")
        axes[2].set_ylim(min(0.0, min(v for pts in fidelity.values() for _, v in pts)), 1.02)
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: np.ndarray, title: str):
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    im = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(im, ax=ax, label="test samples")
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(
            j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > confusion.max() / 2 else "black"
        )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def detector_images(images: np.ndarray, regions: np.ndarray, title: str, labels=None, pitch_m: float | None = None):
    """Detected intensity of a few test samples (one colour scale, in units of the input
    power per pixel), detector regions outlined and numbered, each titled with its true class
    and the prediction (the brightest detector)."""
    k = len(images)
    fig, axes = plt.subplots(1, k, figsize=(2.6 * k + 0.9, 3.0), squeeze=False)
    extent = _extent_mm(images.shape[-1], pitch_m)
    ids = [int(c) for c in np.unique(regions) if c >= 0]
    vmax = float(np.max(images)) or 1.0
    for i, (img, ax) in enumerate(zip(images, axes[0])):
        im = ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax, extent=extent, origin="upper")
        ax.contour(regions >= 0, levels=[0.5], colors="cyan", linewidths=0.5, extent=extent, origin="upper")
        sums = [float(img[regions == c].sum()) for c in ids]
        brightest = ids[int(np.argmax(sums))] if ids else None
        true = f"true {int(labels[i])}, " if labels is not None and i < len(labels) else ""
        ax.set_title(f"{true}predicted {brightest}", fontsize=8)
        _label_regions(ax, regions, ids, extent)
        _mm_axes(ax, extent, first=i == 0)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="intensity (input power / px)")
    fig.suptitle(title)
    return fig


def _label_regions(ax, regions: np.ndarray, ids: list[int], extent) -> None:
    """Each detector's class number at its region's centre."""
    n = regions.shape[0]
    for c in ids:
        ys, xs = np.nonzero(regions == c)
        y, x = ys.mean(), xs.mean()
        if extent is not None:
            x = extent[0] + (x + 0.5) * (extent[1] - extent[0]) / n
            y = extent[3] - (y + 0.5) * (extent[3] - extent[2]) / n
        ax.text(x, y, str(c), color="cyan", fontsize=6, ha="center", va="center")
