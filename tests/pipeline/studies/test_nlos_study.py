"""ffm-train experiment=nlos, in-process, on the real cluster with a real MLflow store (reduced)."""

import json

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

from pipeline.config import ConfigError, load_config
from pipeline.studies.runner import STUDIES, run_study


def _cfg(tmp_path, *overrides):
    return load_config(
        compose(*overrides, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/out")
    )


REDUCED = (
    "experiment=nlos",
    "study.nlos.seeds=[1]",
    "+study.nlos.scene.wall.n=48",
    "+study.nlos.scene.wall.segments=48",
    "+study.nlos.scene.spacing_px=12",
    "study.nlos.ffm_steps=60",
    "study.nlos.lr=0.1",
    "study.nlos.test_scenes=4",
    "study.nlos.digits=false",
)


def test_nlos_study_ffm_images_unseen_scenes_better_than_annealing(ray_cluster, tmp_path):
    summary = run_study(_cfg(tmp_path, *REDUCED))
    rows = {r["method"]: r for r in summary["seeds"]}
    ffm, sa = rows["ffm"], rows["annealing"]
    assert ffm["camera_frames"] == 60 * 18 and sa["camera_frames"] <= ffm["camera_frames"]
    for name in ("five", "seven"):  # trained on single objects, tested on unseen multi-object scenes
        assert ffm[f"ssim_{name}"] > rows["initial"][f"ssim_{name}"] + 0.15
        assert ffm[f"ssim_{name}"] > sa[f"ssim_{name}"]
    assert ffm["fidelity_symmetry_cosine"] > 0.999  # M = M^T: the forward-only pass is exact
    assert ffm["fidelity_cosine_start"] > 0.95  # with the camera's noise (1e9 photons)
    assert ffm["fidelity_transmission_cosine"] < 0.5  # the control: one crossing of the wall
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.data.tags["study"] == "nlos"
    assert len(client.get_metric_history(run.info.run_id, "seed1/curve/ffm/ssim_five")) == 7
    arts = {a.path for a in client.list_artifacts(summary["run_id"], "figures")}
    assert {"figures/reconstructions.png", "figures/ssim_vs_steps.png", "figures/masks.png"} <= arts
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["study"] == "nlos"


def test_every_study_kind_is_registered_with_its_config():
    from pipeline.config import CHOICES

    assert set(STUDIES) == set(CHOICES["study.kind"])


@pytest.mark.parametrize(
    "override,match",
    [
        ("+study.nlos.scene.objct_px=8", "study.nlos: unknown NLOSSpec option"),
        ("+study.nlos.scene.wall.segmnts=8", "study.nlos: unknown MediumSpec option"),
        ("+study.nlos.scene.spacing_px=40", "study.nlos: the 3 x 3 grid"),
        ("study.nlos.ffm_steps=0", "study.nlos.ffm_steps must be a finite number > 0"),
        ("study.nlos.precision=complex32", "study.nlos.precision"),
    ],
)
def test_bad_nlos_settings_fail_in_one_line_before_ray(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run_study(_cfg(tmp_path, "experiment=nlos", override))


def test_more_devices_than_cluster_cpus_all_run(ray_cluster, tmp_path):
    """Three seeds on the 2-CPU test cluster: the actors share the CPUs instead of the third waiting forever."""
    cfg = _cfg(
        tmp_path,
        "experiment=exceptional_point",
        "study.exceptional_point.seeds=[1,2,3]",
        "study.exceptional_point.steps=2",
    )
    assert [r["seed"] for r in run_study(cfg)["seeds"]] == [1, 2, 3]
