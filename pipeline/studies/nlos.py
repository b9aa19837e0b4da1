"""experiment=nlos: imaging hidden objects through a scattering wall (one device per seed).

One Ray actor per seed builds a hidden wall (:class:`optics.scattering.nlos.HiddenScene`)
and runs the paper's protocol (Xue et al. 2024, Fig. 4): a square object moved over a 3 x 3
grid; the mask is trained on the nine single-object scenes and tested on unseen 5- and
7-object scenes. Methods: FFM (Adam on the forward-only gradient), simulated annealing
over Zernike modes at FFM's number of camera frames, and a ridge reconstruction from frames
captured through the initial mask. Also: gradient fidelity (start and end of training, and
the transmission control), hidden-digit classification on the frames, the frame rates.
"""

from __future__ import annotations

import time

import numpy as np

TEST_SETS = {"five": (5, 1000), "seven": (7, 2000)}  # objects per scene, first sample id (noise keys)


def nlos_spec(settings: dict):
    """The :class:`NLOSSpec` of the settings (``scene`` knobs, ``wall`` the MediumSpec knobs)."""
    from optics.core.measurement import check_spec_names
    from optics.scattering import medium, nlos

    scene = dict(settings["scene"])
    wall = scene.pop("wall", {})
    check_spec_names(medium.MediumSpec, wall)
    check_spec_names(nlos.NLOSSpec, scene)
    base = nlos.default_wall().__dict__ | wall
    return nlos.NLOSSpec(wall=medium.MediumSpec(**base), **scene)


def check_settings(settings: dict) -> None:
    """Build the spec and the test scenes once (a one-line ``ValueError`` for a bad value)."""
    nlos_spec(settings)
    if settings["test_scenes"] < 1:
        raise ValueError(f"test_scenes must be >= 1, got {settings['test_scenes']}")


def _sets(spec, settings: dict, seed: int) -> dict:
    from optics.scattering.nlos import random_scenes, square_scenes

    return {
        name: (square_scenes(spec, random_scenes(settings["test_scenes"], k, seed)), first)
        for name, (k, first) in TEST_SETS.items()
    }


def run(seed: int, settings: dict, measurement) -> dict:
    """The whole experiment on one hidden wall; returns plain NumPy and floats."""
    from dataclasses import replace

    from optics.core.backend import get_backend
    from optics.scattering import nlos, nlos_baselines, nlos_imaging

    s, spec = settings, nlos_spec(settings)
    backend = get_backend("numpy", s["precision"], fft_threads=1)
    scene = nlos.HiddenScene(spec, seed, measurement, backend)
    train = nlos.square_scenes(spec, [[k] for k in range(nlos.GRID**2)])
    tests = _sets(spec, s, seed)
    phi0 = nlos_imaging.initial_mask(spec.wall.segments, seed)
    t0 = time.perf_counter()
    ffm = nlos_imaging.train_ffm(scene, train, s["ffm_steps"], s["lr"], phi0, tests, s["record_every"])
    ffm["seconds"] = time.perf_counter() - t0
    frames = int(ffm["frames"][-1])
    sa = nlos_baselines.anneal(scene, train, frames, phi0, s["zernike_modes"], s["sa_step_rad"], seed=seed)
    ridge = nlos_baselines.ridge_reconstruction(scene, phi0, train, tests, s["ridge_repeats"], s["ridge_alpha"])
    control = nlos.HiddenScene(replace(spec, geometry="transmission"), seed, measurement, backend)
    out = {
        "methods": {
            "initial": _test(scene, phi0, tests, 0),
            "ffm": _test(scene, ffm["phases"], tests, 1) | {"frames": frames},
            "annealing": _test(scene, sa["phases"], tests, 2) | {"frames": int(sa["frames"][-1])},
            "ridge": {"metrics": ridge["metrics"], "images": ridge["images"], "frames": ridge["frames"]},
        },
        "ffm": ffm,
        "annealing": sa,
        "fidelity": {
            "start": nlos_imaging.fidelity(scene, phi0, train, train**2, step=10**6),
            "end": nlos_imaging.fidelity(scene, ffm["phases"], train, train**2, step=10**6 + 1),
            "transmission_control": nlos_imaging.fidelity(control, phi0, train, train**2, step=10**6),
        },
        "ground_truth": {name: objects**2 for name, (objects, _) in tests.items()},
        "rates": nlos_baselines.frame_rates(s["camera_fps"], ridge["predict_s"])
        | {"fast_optical_hz": float(s["fast_camera_fps"]), "ridge_predict_s": ridge["predict_s"]},
        "describe": scene.describe(),
    }
    if s["digits"]:
        out["classification"] = _digits(scene, spec, {"initial": phi0, "ffm": ffm["phases"], "annealing": sa["phases"]})
    return out


def _test(scene, phases, tests: dict, step: int) -> dict:
    """Measured test frames (inference pass ``step``) and their metrics, per test set."""
    from optics.core.measurement import PassKey
    from optics.scattering.nlos_imaging import image_metrics, reconstruct

    images, metrics = {}, {}
    for name, (objects, first) in tests.items():
        key = PassKey(step, "inference", tuple(range(first, first + len(objects))))
        images[name] = reconstruct(scene, phases, objects, key)
        metrics[name] = image_metrics(images[name], objects**2)
    return {"metrics": metrics, "images": images, "phases": np.asarray(phases)}


def _digits(scene, spec, masks: dict) -> dict:
    from optics.core.data import load_digits_split
    from optics.scattering.nlos import digit_scenes
    from optics.scattering.nlos_baselines import classify_digits

    split = load_digits_split(scene.seed)
    train = (digit_scenes(spec, split.train.images), split.train.labels)
    test = (digit_scenes(spec, split.test.images), split.test.labels)
    return classify_digits(scene, masks, train, test)
