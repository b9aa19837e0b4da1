"""experiment=xue2024_deep: the paper's configuration composes, the reduced one
trains end to end on a simulated chip, and the plan's notes carry the band limit and the cost."""

from conftest import compose

from pipeline import train
from pipeline.config import load_config
from pipeline.run.build import load_split, make_plan


def test_the_paper_configuration_composes_to_its_geometry_loss_and_optimiser():
    cfg = load_config(compose("experiment=xue2024_deep"))
    split = load_split(cfg)
    plan = make_plan(cfg, split.n_classes, len(split.train))
    g = plan.geometry
    assert (g.n, g.n_layers, g.pitch, g.wavelength, g.distance, g.pad) == (400, 8, 8e-6, 532e-9, 0.388, 200)
    assert (g.detector_layout, g.detector_px, g.object_px) == ("xue2024", 40, 392)
    assert plan.objective.kind == "scaled_mse" and plan.objective.per_sample_grad_max == 0.02
    assert (plan.optimizer.kind, plan.optimizer.lr, cfg.trainer.batch_size) == ("adam", 0.05, 10)
    assert len(split.val) == len(split.test) == 100  # 10 per class
    assert any("93.8%" in n for n in plan.notes)  # the band limit of the 800 x 800 grid
    assert any("days" in n and "full size" in n for n in plan.notes)  # the projected cost


def test_the_reduced_experiment_trains_and_learns(ray_cluster, tmp_path):
    s = train(
        compose(
            "experiment=xue2024_deep_reduced",
            "trainer.epochs=1",
            "trainer.max_rounds=40",
            "tracking=none",
            f"output_dir={tmp_path}/out",
        )
    )
    assert s["rounds"] == 40 and s["trainer"] == "ffm"
    accuracy = s["chips"]["chip0"]["test_accuracy"]
    assert accuracy > 0.3  # 10 classes: chance is 0.1
