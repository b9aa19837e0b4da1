"""ffm-optics orchestration: chips as Ray actors, forward-only rounds, MLflow tracking, Hydra CLI.

``pipeline.train(cfg)`` runs the main job from a config mapping (what ``ffm-train`` composes).
"""


def train(cfg):
    """Run one training job (see :func:`pipeline.driver.train`)."""
    from .driver import train as _train

    return _train(cfg)


__all__ = ["train"]
