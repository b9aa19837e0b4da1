"""Studies that are not classification training: focusing, exceptional points, NLOS imaging.

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

``ffm-train experiment=nlos``: imaging hidden objects through a scattering wall
(:mod:`pipeline.studies.nlos`).

Each kind is one entry of :data:`STUDIES` (run, check, log). Each device is one actor and
one coarse call; only this coordinator talks to the tracker.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optics.core.measurement import MeasurementSpec, check_spec_names
from pipeline.config import ConfigError, RunConfig
from pipeline.tracking.lifecycle import tracked_run


def _focusing(seed: int, s: dict, measurement: MeasurementSpec) -> dict:
    from optics.scattering import medium as scattering
    from optics.scattering import model_free

    medium = scattering.ScatteringMedium(scattering.MediumSpec(**s["medium"]), seed, measurement)
    targets = np.asarray(s["targets"])
    runs = {
        "ffm": model_free.focus_ffm(medium, targets, s["ffm_steps"], s["lr"], s["loss"]),
        "sequential": model_free.focus_sequential(medium, targets, s["sequential_cycles"], s["phase_steps"]),
        "pso": model_free.focus_pso(medium, targets, s["pso_particles"], s["pso_iterations"], seed=seed),
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


def _exceptional_point(seed: int, s: dict, measurement: MeasurementSpec) -> dict:
    from optics.resonators import exceptional

    system = exceptional.ResonatorChain(gain=s["gain"], seed=seed, measurement=measurement)
    hist = exceptional.drive_to_exceptional_point(system, s["start"], s["steps"], s["lr"], s["method"])
    end = system.realised(hist["params"][-1])
    return {"history": hist, "realised_end": end, "describe": system.describe()}


def _check_focusing(s: dict) -> None:
    from optics.scattering import medium as scattering

    check_spec_names(scattering.MediumSpec, s["medium"])
    spec = scattering.MediumSpec(**s["medium"])
    scattering.check_targets(np.asarray(s["targets"]), spec.n)


def _check_exceptional_point(s: dict) -> None:
    from optics.resonators import exceptional

    exceptional.ResonatorChain(gain=s["gain"]).check_params(s["start"])


@dataclass(frozen=True)
class StudyKind:
    """One study: ``run(seed, settings, measurement)`` on a worker, ``check(settings)`` before Ray
    starts (raises ``ValueError``), ``log(tracker, results, images)`` on the coordinator (rows)."""

    run: Callable[[int, dict, MeasurementSpec], dict]
    check: Callable[[dict], None]
    log: Callable[..., list]


def _log(module: str, name: str) -> Callable[..., list]:
    """The study's logging function ``pipeline.studies.<module>.<name>``, imported when called."""

    def log(tracker, results: dict, images: bool) -> list:
        from pipeline.studies import figures, nlos_figures

        return getattr({"figures": figures, "nlos_figures": nlos_figures}[module], name)(tracker, results, images)

    return log


def _nlos_run(seed: int, s: dict, measurement: MeasurementSpec) -> dict:
    from pipeline.studies import nlos

    return nlos.run(seed, s, measurement)


def _nlos_check(s: dict) -> None:
    from pipeline.studies import nlos

    nlos.check_settings(s)


STUDIES: dict[str, StudyKind] = {
    "focusing": StudyKind(_focusing, _check_focusing, _log("figures", "log_focusing")),
    "exceptional_point": StudyKind(
        _exceptional_point, _check_exceptional_point, _log("figures", "log_exceptional_point")
    ),
    "nlos": StudyKind(_nlos_run, _nlos_check, _log("nlos_figures", "log_nlos")),
}


class StudyWorker:
    """One simulated device (a medium, a resonator chain, a hidden scene) and its whole experiment."""

    def __init__(self, kind: str, seed: int, settings: dict, measurement: dict):
        self.kind, self.seed, self.settings = kind, int(seed), settings
        self.measurement = MeasurementSpec(**measurement)

    def run(self) -> dict:
        return STUDIES[self.kind].run(self.seed, self.settings, self.measurement)


def _settings(cfg: RunConfig) -> tuple[list, dict]:
    """Typed settings for the workers, checked here (one line naming the key) before Ray starts."""
    kind = cfg.study.kind
    sub = getattr(cfg.study, kind)
    settings = {k: v for k, v in vars(sub).items() if k != "seeds"}
    measurement = {"level": cfg.chip.level} | cfg.chip.measurement
    try:
        check_spec_names(MeasurementSpec, cfg.chip.measurement)
        MeasurementSpec(**measurement)
        STUDIES[kind].check(settings)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"study.{kind}: {exc}") from None
    if not sub.seeds:
        raise ConfigError(f"study.{kind}.seeds must list at least one device seed")
    return list(sub.seeds), {"settings": settings, "measurement": measurement}


def _actor_cpus(cfg: RunConfig, devices: int) -> float:
    """CPUs per device actor: ``chip.num_cpus``, shared out when the devices outnumber the
    cluster's CPUs (every actor holds its CPUs until the study ends, so with whole CPUs a
    fourth seed on a 3-CPU cluster would wait forever)."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return min(float(cfg.chip.num_cpus), total / max(devices, 1))


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
    remote = ray.remote(num_cpus=_actor_cpus(cfg, len(seeds)), max_restarts=cfg.cluster.max_restarts)(StudyWorker)
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
    rows = STUDIES[cfg.study.kind].log(tracker, results, cfg.tracking.log_images)
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
