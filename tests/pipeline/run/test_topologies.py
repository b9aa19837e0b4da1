"""Pipeline topology end to end through ffm-train (Ray actors, tracking, checkpoints)."""

import numpy as np
from conftest import compose

from pipeline import train


def test_pipeline_topology_trains_and_reports_bubbles(ray_cluster, tmp_path, sqlite_uri):
    from mlflow.tracking import MlflowClient

    s = train(
        compose(
            "debug=smoke",
            "topology=pipeline",
            f"tracking.uri='{sqlite_uri}'",
            "chip.num_cpus=0.5",
            f"output_dir={tmp_path}/out",
        )
    )
    assert list(s["chips"]) == ["pipeline"] and s["chips"]["pipeline"]["layers_per_chip"] == [2, 1]
    with np.load(tmp_path / "out" / "phases.npz") as z:
        assert z["stage0/phase"].shape == (2, 64, 64) and z["stage1/phase"].shape == (1, 64, 64)
    hist = MlflowClient(sqlite_uri).get_metric_history(s["run_id"], "timing/bubble_frac")
    assert len(hist) == 6 and all(0 <= m.value < 1 for m in hist)


def test_width_topology_combines_chiplets(ray_cluster, tmp_path):
    s = train(
        compose("debug=smoke", "topology=width", "tracking=none", "trainer.max_rounds=8", f"output_dir={tmp_path}/out")
    )
    combined = s["chips"]["combined"]
    assert 0.0 <= combined["test_accuracy"] <= 1.0
    assert set(combined["subtask_accuracy"]) == {"chip0", "chip1"}
    assert combined["chip0"]["classes"] == [0, 1, 2, 3, 4] and combined["chip1"]["classes"] == [5, 6, 7, 8, 9]
    with np.load(tmp_path / "out" / "phases.npz") as z:
        assert set(z.files) == {"chip0/phase", "chip1/phase"}


def test_width_labels_map_to_subtasks():
    import dataclasses

    from optics.core.data import load_digits_split
    from optics.core.ffm import Objective
    from optics.core.measurement import MeasurementSpec
    from optics.diffractive.geometry import Geometry
    from optics.diffractive.imperfections import HardwareSpec
    from pipeline.run.actors import ChipSpec, ChipWorker

    g = dataclasses.replace(Geometry.small(), n_classes=4)
    spec = ChipSpec(0, 1, g, HardwareSpec(), MeasurementSpec(), classes=(3, 7, 9))
    worker = ChipWorker(spec, load_digits_split(0), Objective())
    np.testing.assert_array_equal(worker._labels(np.array([3, 7, 9, 0, 5])), [0, 1, 2, 3, 3])


def test_scaling_jobs_and_report(ray_cluster, tmp_path, sqlite_uri):
    """Two jobs of experiment=scaling (1 and 2 chips), then `ffm-report scaling` on them."""
    from pipeline.reports.cli import main as report

    for k in (1, 2):
        train(
            compose(
                "experiment=scaling",
                f"topology.n_chips={k}",
                "trainer.max_rounds=5",
                f"tracking.uri='{sqlite_uri}'",
                f"output_dir={tmp_path}/k{k}",
            )
        )
    assert report(["scaling", "--uri", sqlite_uri, "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "scaling.md").read_text().splitlines()
    assert table[0].startswith("| topology | chips | samples_per_s | efficiency")
    rows = [line for line in table[2:] if line.startswith("| data_parallel")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2"]
    assert rows[0].split("|")[4].strip() == "1.00"
    assert (tmp_path / "report" / "scaling.png").stat().st_size > 10_000
