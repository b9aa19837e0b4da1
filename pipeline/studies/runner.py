"""Studies that are not classification training: focusing and exceptional points.

``ffm-train experiment=focusing``: for each seed, a hidden scattering medium in a Ray actor
(:class:`StudyWorker`) is focused onto the target spots by FFM, by the continuous
sequential algorithm and by particle swarm optimisation; the coordinator logs the
enhancement against optical passes, the focal spots before and after, and a summary table
(enhancement against the Vellekoop-Mosk optimum, passes to 90 % of the best, spot width
against the diffraction limit).

``ffm-train experiment=exceptional_point``: for each seed, a hidden pair of coupled
resonators is driven to an exceptional point with FFM-style gradients from transmission
measurements only; logged: splitting per step, eigenvalue trajectories, spectra, and the
end point against the analytic exceptional point of the realised device
(``w1 = w2``, ``k = |g1 - g2| / 2``), which the optimiser never sees.

Each device is one actor and one coarse call; only this coordinator talks to the tracker.
"""

from __future__ import annotations

import functools
import json
import os
import time

import numpy as np

from optics.core.measurement import MeasurementSpec, check_spec_names
from pipeline.config import ConfigError, RunConfig
from pipeline.tracking.lifecycle import tracked_run


class StudyWorker:
    """One simulated device (a medium or a resonator chain) and its whole experiment."""

    def __init__(self, kind: str, seed: int, settings: dict, measurement: dict):
        self.kind, self.seed, self.settings = kind, int(seed), settings
        self.measurement = MeasurementSpec(**measurement)

    def run(self) -> dict:
        return self._focusing() if self.kind == "focusing" else self._exceptional_point()

    def _focusing(self) -> dict:
        from optics.scattering import medium as scattering
        from optics.scattering import model_free

        s = self.settings
        medium = scattering.ScatteringMedium(scattering.MediumSpec(**s["medium"]), self.seed, self.measurement)
        targets = np.asarray(s["targets"])
        runs = {
            "ffm": model_free.focus_ffm(medium, targets, s["ffm_steps"], s["lr"], s["loss"]),
            "sequential": model_free.focus_sequential(medium, targets, s["sequential_cycles"], s["phase_steps"]),
            "pso": model_free.focus_pso(medium, targets, s["pso_particles"], s["pso_iterations"], seed=self.seed),
        }
        best = max(r["final"]["enhancement"] for r in runs.values())
        for r in runs.values():
            r["passes_to_90pct_best"] = model_free.passes_to_reach(r, 0.9 * best)
        n_modes = medium.spec.segments**2
        return {
            "runs": runs,
            "theory": scattering.theoretical_enhancement(n_modes) / len(targets),
            "n_modes": n_modes,
            "describe": medium.describe(),
        }

    def _exceptional_point(self) -> dict:
        from optics.resonators import exceptional

        s = self.settings
        system = exceptional.ResonatorChain(gain=s["gain"], seed=self.seed, measurement=self.measurement)
        hist = exceptional.drive_to_exceptional_point(system, s["start"], s["steps"], s["lr"], s["method"])
        end = system.realised(hist["params"][-1])
        return {"history": hist, "realised_end": end, "describe": system.describe()}


def _settings(cfg: RunConfig) -> tuple[list, dict]:
    """Typed settings for the workers, checked here (one line naming the key) before Ray starts."""
    kind = cfg.study.kind
    sub = getattr(cfg.study, kind)
    settings = {k: v for k, v in vars(sub).items() if k != "seeds"}
    measurement = {"level": cfg.chip.level} | cfg.chip.measurement
    try:
        check_spec_names(MeasurementSpec, cfg.chip.measurement)
        MeasurementSpec(**measurement)
        _check_device(kind, settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study.{kind}: {exc}") from None
    if not sub.seeds:
        raise ConfigError(f"study.{kind}.seeds must list at least one device seed")
    return list(sub.seeds), {"settings": settings, "measurement": measurement}


def _check_device(kind: str, s: dict) -> None:
    if kind == "focusing":
        from optics.scattering import medium as scattering

        check_spec_names(scattering.MediumSpec, s["medium"])
        spec = scattering.MediumSpec(**s["medium"])
        scattering.check_targets(np.asarray(s["targets"]), spec.n)
    else:
        from optics.resonators import exceptional

        exceptional.ResonatorChain(gain=s["gain"]).check_params(s["start"])


def run_study(cfg: RunConfig) -> dict:
    """Run every seed's device as an actor (through the fault path), log the results; returns the summary.
    The run lives in :func:`pipeline.tracking.lifecycle.tracked_run`: FINISHED, FAILED or KILLED."""
    import ray

    from pipeline.run.build import flat_params, make_plan_policy, make_tracker, run_tags, start_ray
    from pipeline.run.rounds import call_chips, stop_actors

    seeds, spec = _settings(cfg)
    tracker = make_tracker(cfg)
    tracker.probe(cfg.tracking.probe_timeout_s)
    start_ray(cfg)
    remote = ray.remote(num_cpus=cfg.chip.num_cpus, max_restarts=cfg.cluster.max_restarts)(StudyWorker)
    workers = [remote.remote(cfg.study.kind, seed, spec["settings"], spec["measurement"]) for seed in seeds]
    tags = run_tags(cfg) | {"study": cfg.study.kind}
    with tracked_run(tracker, flat_params(cfg), tags, release=functools.partial(stop_actors, workers)):
        t0 = time.perf_counter()
        calls = {i: (lambda w=w: w.run.remote()) for i, w in enumerate(workers)}  # one coarse call per device
        found, _ = call_chips(
            calls, make_plan_policy(cfg, strict=True), f"study {cfg.study.kind}", tracker.event, workers
        )
        results = {seed: found[i] for i, seed in enumerate(seeds)}
        return _log_study(cfg, tracker, results, time.perf_counter() - t0)


def _log_study(cfg: RunConfig, tracker, results: dict, wall_s: float) -> dict:
    from pipeline.studies.figures import log_exceptional_point, log_focusing

    log = log_focusing if cfg.study.kind == "focusing" else log_exceptional_point
    rows = log(tracker, results, cfg.tracking.log_images)
    summary = {
        "study": cfg.study.kind,
        "seeds": rows,
        "wall_seconds": wall_s,
        "run_id": tracker.run_id,
        "tracking_uri": tracker.uri,
    }
    out_dir = cfg.output_dir or "."
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    tracker.log_text(json.dumps(summary, indent=2, default=float), "summary.json")
    print(json.dumps(rows, indent=2, default=float))
    return summary
