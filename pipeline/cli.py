"""``ffm-train``: the Hydra app over ``conf/`` (thin: compose, then :func:`pipeline.train`)."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, register_resolvers

register_resolvers()

_HERE = os.path.dirname(os.path.abspath(__file__))
# an installed wheel carries conf/ inside the package; a source checkout has it at the top level
CONFIG_DIR = next(p for p in (os.path.join(_HERE, "conf"), os.path.join(_HERE, "..", "conf")) if os.path.isdir(p))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .checkpoint import CheckpointError
    from .config import load_config
    from .driver import train
    from .studies import run_study
    from .sweep import run_sweep

    if cfg.get("output_dir") is None:
        OmegaConf.set_struct(cfg, False)
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    try:
        if cfg.get("study", {}).get("kind"):
            run_study(load_config(cfg))
            return
        if cfg.sweep.name:
            result = run_sweep(load_config(cfg))
            sys.exit(1 if result["failed"] else 0)
        train(cfg)
    except (ConfigError, CheckpointError) as exc:
        print(f"ffm-train: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
