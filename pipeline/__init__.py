"""ffm-optics orchestration: chips as Ray actors, forward-only rounds, MLflow tracking, Hydra CLI.

``pipeline.train(cfg)`` runs the main job from a config mapping (what ``ffm-train`` composes);
``pipeline.run_sweep(cfg)`` runs a sweep of such jobs (``experiment=imperfection_sweep``).
"""


def train(cfg):
    """Run one training job (see :func:`pipeline.run.driver.train`)."""
    from pipeline.run.driver import train as _train

    return _train(cfg)


def run_sweep(cfg):
    """Run or resume a sweep of jobs (see :func:`pipeline.sweeps.grid.run_sweep`)."""
    from pipeline.config import load_config
    from pipeline.sweeps.grid import run_sweep as _run_sweep

    return _run_sweep(load_config(cfg))


__all__ = ["run_sweep", "train"]
