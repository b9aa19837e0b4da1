"""The trained masks as an MLflow model: ``mlflow.pyfunc.load_model(...).predict(images)``.

The model is the run's digital twin (noise-free, the nominal optics) programmed with the
best-validation phases: ``predict`` encodes the inputs as the chip system does (images:
amplitude objects on the input plane; an MZI mesh: its feature vectors as mode amplitudes),
propagates them, and returns the class of the brightest detector, ``argmax_c sum_{r in R_c} |y_r|^2``.
The model folder carries the chip spec (geometry, wavelength, pitch, distances), the phases,
this repository's ``optics`` and ``pipeline`` sources (``code_paths``), and pinned pip
requirements of what they import, so it loads without ffm-optics installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import pickle
import warnings

import numpy as np

BATCH = 64  # samples per pass of predict
REQUIREMENTS = ("numpy", "scipy", "scikit-learn", "pyfftw", "numba", "mlflow")


def pip_requirements() -> list[str]:
    """What the model's code imports, pinned to this environment's versions."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def save_twin_model(path: str, spec, phases: dict[str, np.ndarray]) -> str:
    """Save the model for chip ``spec`` with ``phases`` ({'phase': ..., ['amplitude': ...]}) to ``path``."""
    import mlflow.pyfunc

    import optics

    pipeline_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this package
    os.makedirs(path + ".parts", exist_ok=True)
    spec_path, phases_path = os.path.join(path + ".parts", "spec.pkl"), os.path.join(path + ".parts", "phases.npz")
    with open(spec_path, "wb") as f:
        pickle.dump(dataclasses.replace(spec, backend="numpy", fft_planner="estimate", fft_threads=1), f)
    np.savez(phases_path, **phases)
    with _quiet_saving():
        mlflow.pyfunc.save_model(
            path,
            python_model=TwinClassifier(),
            artifacts={"spec": spec_path, "phases": phases_path},
            code_paths=[os.path.dirname(optics.__file__), pipeline_dir],
            pip_requirements=pip_requirements(),
        )
    return path


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # a bare install (optics only): the model can be neither saved nor loaded
    PythonModel = object

# MLflow's notes while saving that need no action here: predict has no type hints (its input is an
# array of images, not a list of records), the model is cloudpickled (our own class, loaded with
# its code) and pip's version unknown (uv); no progress bars for copying the parts in, and no
# copy of the current folder's uv project files (the model pins its own requirements)
NOTES = ("mlflow.pyfunc", "mlflow.utils.environment", "mlflow.utils.uv_utils", "mlflow.models.model")
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_LOG_UV_FILES": "false"}


@contextlib.contextmanager
def _quiet_saving():
    levels = {name: logging.getLogger(name).level for name in NOTES}
    env = {name: os.environ.get(name) for name in QUIET_ENV}
    try:
        os.environ.update(QUIET_ENV)
        for name in NOTES:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TwinClassifier(PythonModel):
    """Classes from inputs on the digital twin with the run's masks."""

    # predict takes an array of images, not a list of records: MLflow's type-hint validation
    # (and its warning that there are no hints) does not apply
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from optics.core.backend import get_backend
        from pipeline.chips import system_of
        from pipeline.chips.base import twin_of

        with open(context.artifacts["spec"], "rb") as f:
            self.spec = pickle.load(f)
        with np.load(context.artifacts["phases"]) as f:
            phases = {k: f[k] for k in f.files}
        self.system = system_of(self.spec)
        s = self.spec
        backend = lambda: get_backend(s.backend, s.precision, s.fft_threads, s.fft_planner)  # noqa: E731
        self.twin = twin_of(self.system, s, backend)
        self.twin.program(phases["phase"], phases.get("amplitude"))

    def predict(self, context, model_input, params=None):
        """``model_input`` (N, h, w) images (or (N, features) for a mesh) -> (N,) classes."""
        from optics.core.detectors import detector_scores
        from optics.core.measurement import PassKey

        inputs = np.asarray(model_input, dtype=np.float64)
        classes = []
        for start in range(0, len(inputs), BATCH):  # a batch at a time: the twin's fields are large
            x = self.system.encode(self.spec.geometry, inputs[start : start + BATCH])
            intensity = self.twin.infer(x, PassKey(0, "inference", tuple(range(start, start + len(x)))))
            scores = self.twin.backend.to_numpy(detector_scores(intensity, self.twin.detectors))
            classes.append(np.asarray(scores).argmax(axis=1))
        return np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64)
