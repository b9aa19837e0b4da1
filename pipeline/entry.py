"""The console scripts' entry points: a missing ``pipeline`` extra is one line, not a traceback.

``ffm-train`` and ``ffm-report`` need Ray, MLflow and Hydra, which ``pip install ffm-optics``
alone does not bring (the base install is the optics; ``ffm-rig`` needs only the ``rig`` extra).
"""

from __future__ import annotations

import sys

PIPELINE_MODULES = ("ray", "mlflow", "hydra", "omegaconf", "matplotlib", "tqdm")


def _missing_extra(prog: str, exc: ModuleNotFoundError) -> int:
    print(
        f'{prog}: error: {exc.name} is not installed; install the pipeline extra: pip install "ffm-optics[pipeline]"',
        file=sys.stderr,
    )
    return 2


def _run(prog: str, load_main) -> int:
    """Import the real entry point with ``load_main()`` and run it; a missing extra is one line."""
    try:
        main = load_main()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in PIPELINE_MODULES:
            return _missing_extra(prog, exc)
        raise
    return main()


def train() -> int:
    """``ffm-train``: :func:`pipeline.cli.main`."""

    def load():
        from pipeline.cli import main

        return main

    return _run("ffm-train", load)


def report() -> int:
    """``ffm-report``: :func:`pipeline.reports.cli.main`."""

    def load():
        from pipeline.reports.cli import main

        return main

    return _run("ffm-report", load)
