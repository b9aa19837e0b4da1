"""Metrics and pictures of the focusing and exceptional-point studies (through the tracker)."""

from __future__ import annotations

import numpy as np

from pipeline.reports import figures  # noqa: F401  (selects the Agg backend)

METHODS = ("ffm", "sequential", "pso")


def log_focusing(tracker, results: dict, images: bool) -> list[dict]:
    """Per seed and method: enhancement, passes, spot width; curves of the first seed; figures."""
    rows = []
    for seed, res in results.items():
        for method in METHODS:
            r, fin = res["runs"][method], res["runs"][method]["final"]
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "enhancement": fin["enhancement"],
                    "theory": res["theory"],
                    "fraction_of_theory": fin["enhancement"] / res["theory"],
                    "passes": int(r["passes"][-1]),
                    "passes_to_90pct_best": r["passes_to_90pct_best"],
                    "fwhm_um": 1e6 * fin["fwhm_m"],
                    "airy_fwhm_um": 1e6 * fin["airy_fwhm_m"],
                    "psnr_db": fin["psnr_db"],
                }
            )
    for row in rows:
        tracker.log_metrics(
            {
                f"seed{row['seed']}/{row['method']}/{k}": row[k]
                for k in ("enhancement", "fraction_of_theory", "passes_to_90pct_best", "fwhm_um", "psnr_db")
                if np.isfinite(row[k])
            },
            step=0,
        )
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        tracker.log_metrics(
            {
                f"{method}/enhancement_mean": float(np.mean([r["enhancement"] for r in sel])),
                f"{method}/fraction_of_theory_mean": float(np.mean([r["fraction_of_theory"] for r in sel])),
            },
            step=0,
        )
    first = results[next(iter(results))]
    for method in METHODS:  # the curve of the first seed: enhancement against optical passes
        r = first["runs"][method]
        for passes, e in zip(r["passes"], r["enhancement"]):
            tracker.log_metrics({f"curve/{method}/enhancement": float(e)}, step=int(passes))
    if images:
        tracker.log_figure(_enhancement_figure(first), "figures/enhancement_vs_passes.png")
        tracker.log_figure(_spots_figure(first), "figures/focal_spots.png")
    return rows


def _enhancement_figure(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        r = res["runs"][method]
        ax.plot(np.maximum(r["passes"], 1), r["enhancement"], label=method)
    ax.axhline(res["theory"], color="k", ls="--", lw=1, label="pi/4 (N-1) + 1")
    ax.set_xscale("log")
    ax.set_xlabel("optical passes (camera frames)")
    ax.set_ylabel("enhancement")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _spots_figure(res: dict):
    import matplotlib.pyplot as plt

    frames = [("before", res["runs"]["ffm"]["frame_before"])] + [
        (f"after {m}", res["runs"][m]["frame_after"]) for m in METHODS
    ]
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3.2))
    vmax = max(f.max() for _, f in frames)
    for ax, (title, frame) in zip(axes, frames):
        ax.imshow(frame, cmap="inferno", vmin=0, vmax=vmax)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def log_exceptional_point(tracker, results: dict, images: bool) -> list[dict]:
    """Per seed: splitting start and end, distance of the end point from the analytic EP."""
    rows = []
    for seed, res in results.items():
        h, end = res["history"], res["realised_end"]
        ep_coupling = abs(end["gain"][0] - end["gain"][1]) / 2
        rows.append(
            {
                "seed": seed,
                "true_splitting_start": float(h["true_splitting"][0]),
                "true_splitting_end": float(h["true_splitting"][-1]),
                "measured_splitting_end": float(h["splitting"][-1]),
                "detuning_difference_end": float(end["detuning"][0] - end["detuning"][1]),
                "coupling_end": float(end["coupling"][0]),
                "analytic_ep_coupling": float(ep_coupling),
                "measurements": int(h["n_measurements"][-1]),
            }
        )
        for step, (sm, st) in enumerate(zip(h["splitting"], h["true_splitting"])):
            tracker.log_metrics(
                {f"seed{seed}/splitting": float(sm), f"seed{seed}/true_splitting": float(st)}, step=step
            )
    tracker.log_metrics({"true_splitting_end_mean": float(np.mean([r["true_splitting_end"] for r in rows]))}, step=0)
    if images:
        first = results[next(iter(results))]
        tracker.log_figure(_ep_figure(first), "figures/exceptional_point.png")
    return rows


def _ep_figure(res: dict):
    import matplotlib.pyplot as plt

    h, end = res["history"], res["realised_end"]
    fig, (ax_e, ax_s, ax_t) = plt.subplots(1, 3, figsize=(14, 4))
    for j in range(h["eigenvalues"].shape[1]):
        ax_e.plot(h["eigenvalues"][:, j].real, h["eigenvalues"][:, j].imag, "o-", ms=3, label=f"measured {j + 1}")
        ax_e.plot(h["true_eigenvalues"][:, j].real, h["true_eigenvalues"][:, j].imag, "k:", lw=1)
    ep = complex(end["detuning"].mean(), end["gain"].mean())
    ax_e.plot(ep.real, ep.imag, "r*", ms=12, label="analytic EP (realised device)")
    ax_e.set_xlabel("Re eigenvalue / gamma0")
    ax_e.set_ylabel("Im eigenvalue / gamma0")
    ax_e.legend(fontsize=8)
    ax_s.semilogy(h["splitting"], "o-", ms=3, label="from measured spectra")
    ax_s.semilogy(h["true_splitting"], "k:", label="true")
    ax_s.set_xlabel("step")
    ax_s.set_ylabel("eigenvalue splitting / gamma0")
    ax_s.legend()
    f = h["probe_frequencies"]
    ax_t.plot(f, np.abs(h["spectrum_start"]) ** 2, label="start")
    ax_t.plot(f, np.abs(h["spectrum_end"]) ** 2, label="end")
    ax_t.set_xlabel("probe detuning / gamma0")
    ax_t.set_ylabel("|t|^2 (measured)")
    ax_t.legend()
    for ax in (ax_e, ax_s, ax_t):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
