"""One line for every error a run can meet: what went wrong and what to do about it.

The command line prints :func:`explain` of whatever ended the run. Errors of this
project already carry their fix; for errors of the libraries underneath (Hydra's
composition, MLflow, the file system, Ray) the fix is added here.
"""

from __future__ import annotations


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _hydra(exc: BaseException) -> str | None:
    from hydra.errors import HydraException, MissingConfigException  # noqa: PLC0415

    if isinstance(exc, MissingConfigException):
        options = getattr(exc, "options", None)
        hint = f"; available: {', '.join(options)}" if options else "; see the folders of conf/ for the groups"
        return f"{_first_line(exc)}{hint}"
    if isinstance(exc, HydraException):
        return f"{_first_line(exc)}; check the override's spelling (key=value, group=option, +new_key=value)"
    return None


def _mlflow(exc: BaseException) -> str | None:
    try:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415
    except ImportError:
        return None
    if isinstance(exc, MlflowException):
        return (f"tracking: {_first_line(exc)}; check MLFLOW_TRACKING_URI / tracking.uri, or run with "
                "tracking=none")
    return None


def _ray(exc: BaseException) -> str | None:
    try:
        from ray.exceptions import RayError  # noqa: PLC0415
    except ImportError:
        return None
    if isinstance(exc, RayError):
        return f"Ray: {type(exc).__name__}: {_first_line(exc)}; check the cluster (ray status) and cluster.* settings"
    if type(exc).__name__ == "AuthenticationError":
        return f"Ray: {_first_line(exc)}; set RAY_AUTH_MODE=token and the cluster's token (~/.ray/auth_token)"
    return None


def explain(exc: BaseException) -> str:
    """``what; fix`` in one line."""
    from .checkpoint import CheckpointError  # noqa: PLC0415
    from .config import ConfigError  # noqa: PLC0415
    from .rounds import ChipError, ChipFailure  # noqa: PLC0415

    if isinstance(exc, (ConfigError, CheckpointError, ChipError, ChipFailure)):
        return _first_line(exc)
    for known in (_hydra, _mlflow, _ray):
        line = known(exc)
        if line:
            return line
    if isinstance(exc, PermissionError):
        return f"{exc.strerror}: {exc.filename}; choose a folder you can write (output_dir=...)"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or _first_line(exc)}{where}; check the path and free disk space"
    if isinstance(exc, MemoryError):
        return "out of memory; lower trainer.batch_size, set chip.samples_per_pass, or use a smaller chip"
    if isinstance(exc, ValueError):   # this project's own checks raise ValueError with their fix
        return _first_line(exc)
    return (f"{type(exc).__name__}: {_first_line(exc)} (an unexpected error; rerun with FFM_TRACEBACK=1 "
            "to see where, and report it)")
