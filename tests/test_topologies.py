"""Pipeline topology end to end through ffm-train (Ray actors, tracking, checkpoints)."""

import numpy as np
from conftest import compose

from pipeline import train


def test_pipeline_topology_trains_and_reports_bubbles(ray_cluster, tmp_path, sqlite_uri):
    from mlflow.tracking import MlflowClient

    s = train(compose("debug=smoke", "topology=pipeline", f"tracking.uri='{sqlite_uri}'", "chip.num_cpus=0.5",
                      f"output_dir={tmp_path}/out"))
    assert list(s["chips"]) == ["pipeline"] and s["chips"]["pipeline"]["layers_per_chip"] == [2, 1]
    with np.load(tmp_path / "out" / "phases.npz") as z:
        assert z["stage0/phase"].shape == (2, 64, 64) and z["stage1/phase"].shape == (1, 64, 64)
    hist = MlflowClient(sqlite_uri).get_metric_history(s["run_id"], "round/bubble_frac")
    assert len(hist) == 6 and all(0 <= m.value < 1 for m in hist)
