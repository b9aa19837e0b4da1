"""Checkpoints: the train state as .npz (no pickle) with a SHA-256 checksum beside it.

Layout of the archive: ``params/<group>/<name>``, ``best/<group>/<name>``,
``opt/<group>/<key>`` arrays and one ``meta`` JSON string (round, epoch, position,
live chips, best validation accuracy, MLflow run id, config fingerprint, noise-stream
version). Writes go to a temporary file that is renamed into place, so an interrupted write
never corrupts the last good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from optics.core import measurement
from pipeline.run.coordinator import TrainState

#: The noise-stream version of a checkpoint written before checkpoints carried one.
LEGACY_NOISE_STREAMS = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to a different configuration or noise streams."""


def _flatten(prefix: str, nested: dict) -> dict[str, np.ndarray]:
    return {f"{prefix}/{g}/{k}": np.asarray(v) for g, d in nested.items() for k, v in d.items()}


def _unflatten(arrays: dict, prefix: str) -> dict:
    out: dict = {}
    for key, value in arrays.items():
        if key.startswith(prefix + "/"):
            _, group, name = key.split("/", 2)
            out.setdefault(group, {})[name] = value
    return out


def save(path: str, state: TrainState, run_id: str | None, config_fingerprint: str) -> str:
    """Write ``state`` atomically; returns the hex checksum (also written to ``path + '.sha256'``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = {
        "round": state.round,
        "epoch": state.epoch,
        "position": state.position,
        "alive": state.alive,
        "best_val": state.best_val,
        "run_id": run_id,
        "config": config_fingerprint,
        "noise_streams": measurement.NOISE_STREAM_VERSION,
    }
    arrays = _flatten("params", state.params) | _flatten("best", state.best_params) | _flatten("opt", state.opt)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    digest = _sha256(tmp)
    with open(path + ".sha256.tmp", "w") as f:
        f.write(digest + "\n")
    os.replace(tmp, path)
    os.replace(path + ".sha256.tmp", path + ".sha256")
    return digest


def load(path: str) -> tuple[TrainState, dict]:
    """Verify the checksum and rebuild the state; returns ``(state, meta)``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if not os.path.isfile(path + ".sha256"):
        raise CheckpointError(
            f"checksum file missing: {path}.sha256, so the checkpoint cannot be verified; resume "
            "from a checkpoint with the .sha256 the run wrote beside it"
        )
    with open(path + ".sha256") as f:
        expected = f.read().strip()
    if _sha256(path) != expected:
        raise CheckpointError(
            f"checkpoint {path} does not match its checksum {path}.sha256 (corrupt or changed); "
            "resume from an intact copy or an earlier checkpoint"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        opt = _unflatten(arrays, "opt")
        state = TrainState(
            params=_unflatten(arrays, "params"),
            opt=opt,
            round=meta["round"],
            epoch=meta["epoch"],
            position=meta["position"],
            alive=list(meta["alive"]),
            best_val=meta["best_val"],
            best_params=_unflatten(arrays, "best"),
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); resume from "
            "an intact checkpoint (its .sha256 must match a complete file)"
        ) from None
    if not all(np.isfinite(v).all() for group in state.params.values() for v in group.values()):
        raise CheckpointError(f"checkpoint {path} holds non-finite phases; resume from an earlier checkpoint")
    return state, meta


def noise_streams(meta: dict) -> int:
    """The noise-stream version ``meta`` was written with (1 if it predates the field)."""
    return meta.get("noise_streams", LEGACY_NOISE_STREAMS)


def check_noise_streams(meta: dict, source: str) -> None:
    """Refuse to resume ``source`` (its ``meta``) if it was written with other noise streams than
    this code draws (:data:`optics.core.measurement.NOISE_STREAM_VERSION`): its rounds could not
    be continued bit for bit."""
    written, running = noise_streams(meta), measurement.NOISE_STREAM_VERSION
    if written != running:
        raise CheckpointError(
            f"resume={source} was written with noise streams v{written}; this version draws camera "
            f"noise with v{running}, so the run cannot continue bit for bit: start it again without "
            "resume (or check out the version that wrote it)"
        )


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
