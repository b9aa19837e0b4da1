"""What each per-round metric is called in MLflow, so that the UI's sections tell the story.

MLflow's run page groups charts by the prefix before the first ``/``. A round's numbers go to:

- ``round/<key>``: the training batch's loss, gradient norm and rig counters, at step = round;
  the batch's accuracy is ``round/batch_accuracy`` (a batch of 32 reads 1.0 often: it is not the
  run's accuracy, which is ``final_test_accuracy/<chip>``);
- ``timing/<key>``: seconds and fractions of the round (broadcast, slowest chip, collect,
  update, logging, throughput in samples per second);
- ``fidelity/gradient_cosine``: the cosine of the measured gradient against the true one (a
  simulator's diagnostic, every ``trainer.fidelity_every`` rounds), in its own chart.
"""

from __future__ import annotations

ROUND = "round/"
TIMING = "timing/"
TIMING_KEYS = (  # what the scaling report reads too, in its order
    "samples_per_s",
    "round_s",
    "slowest_chip_s",
    "broadcast_s",
    "collect_s",
    "update_s",
    "logging_s",
    "overhead_frac",
    "bubble_frac",
)
RENAMED = {"accuracy": ROUND + "batch_accuracy", "grad_fidelity_cosine": "fidelity/gradient_cosine"}


def round_metric(key: str) -> str:
    """The MLflow name of a round's metric ``key`` (as the coordinator computes it)."""
    if key in RENAMED:
        return RENAMED[key]
    return (TIMING if key in TIMING_KEYS else ROUND) + key
