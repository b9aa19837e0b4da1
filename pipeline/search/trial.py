"""One search trial: a normal training run (:func:`pipeline.run.driver.train`) reporting to Ray Tune.

The trial is a child run of the search's parent run in MLflow, in its own folder
``<search.root>/<parent run id>/trials/<trial id>``. After each epoch but the last it reports
the validation accuracy to Tune with the epoch's checkpoint (``latest.npz``), so ASHA can stop
it at a rung and Tune can restore it, on any node, from the last epoch it finished. The last
epoch is reported after the final test, with the test accuracy, so a stop there costs nothing.

A trial ASHA stops gets ``SystemExit`` from ``tune.report``; it is turned into
:class:`StoppedEarly`, which the driver treats as Ctrl-C (checkpointed, the run KILLED, the
chip actors stopped), and the trial then ends as Tune expects.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from pipeline.reports.run_report import summary_accuracy
from pipeline.search.space import apply

CHECKPOINT = "latest.npz"


class StoppedEarly(KeyboardInterrupt):
    """The scheduler stopped this trial at an epoch boundary."""


def trial_config(base: dict, point: dict, trial_id: str, parent: str) -> dict:
    """The plain config mapping of one trial: ``base`` with the trial's ``point``, its own folder and child run."""
    d = apply(base, point)
    name = base["search"]["name"]
    d["search"] = {"name": None}
    d["output_dir"] = os.path.join(base["search"]["root"], parent, "trials", trial_id)
    shown = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in point.items())
    d["tracking"] |= {
        "parent_run_id": parent,
        "run_name": f"{name} {trial_id}: {shown}",
        "tags": {"search.trial": trial_id, "search.name": name} | {f"search.{k}": str(v) for k, v in point.items()},
    }
    return d


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_trial(config: dict, base: dict, parent: str) -> None:
    """Tune's function trainable: ``config`` is the sampled point (dotted key -> value)."""
    from ray import tune

    from pipeline.run.driver import train

    trial_id = tune.get_context().get_trial_id()
    d = trial_config(base, dict(config), trial_id, parent)
    d["resume"] = _restored_checkpoint(tune.get_checkpoint(), d["output_dir"])
    seen: dict = {}

    def on_epoch(epoch: int, val_accuracy: float, path: str, run_id: str, last: bool) -> None:
        seen.update(val_accuracy=val_accuracy, run_id=run_id)
        if not last:  # the last epoch is reported with the final test, below
            seen["stopped"] = _report(tune, {"val_accuracy": val_accuracy, "epoch": epoch, "run_id": run_id}, path)
            if seen["stopped"]:
                raise StoppedEarly()

    try:
        summary = train(d, on_epoch=on_epoch)
    except KeyboardInterrupt:  # the driver re-raises a stop as its own Interrupted, checkpointed
        if seen.get("stopped"):
            raise SystemExit(0) from None  # what Tune's stop raised: the trial ends as stopped
        raise
    tune.report(
        {
            "val_accuracy": seen.get("val_accuracy", summary["best_val_accuracy"]),
            "best_val_accuracy": summary["best_val_accuracy"],
            "test_accuracy": summary_accuracy(summary),
            "epoch": summary["epochs"],
            "run_id": summary["run_id"],
        }
    )


def _report(tune, metrics: dict, path: str) -> bool:
    """``tune.report`` with the epoch's checkpoint; True where the scheduler stopped the trial there."""
    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory(prefix="ffm-trial-") as tmp:
        for suffix in ("", ".sha256"):
            if os.path.exists(path + suffix):
                shutil.copy(path + suffix, os.path.join(tmp, CHECKPOINT + suffix))
        try:
            tune.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        except SystemExit:
            return True
    return False


def _restored_checkpoint(checkpoint, out_dir: str) -> str | None:
    """The checkpoint Tune restored this trial from, copied into the trial's folder (None: a fresh trial)."""
    if checkpoint is None:
        return None
    target = os.path.join(out_dir, "checkpoints")
    os.makedirs(target, exist_ok=True)
    with checkpoint.as_directory() as src:
        for suffix in ("", ".sha256"):
            if os.path.exists(os.path.join(src, CHECKPOINT + suffix)):
                shutil.copy(os.path.join(src, CHECKPOINT + suffix), os.path.join(target, CHECKPOINT + suffix))
    return os.path.join(target, CHECKPOINT)
