"""One line for every error a run can meet: what went wrong and what to do about it.

The command line prints :func:`explain` of whatever ended the run. Errors of this
project already carry their fix; for errors of the libraries underneath (Hydra's
composition, MLflow, the file system, Ray) the fix is added here.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _hydra(exc: BaseException) -> str | None:
    from hydra.errors import HydraException, MissingConfigException

    if isinstance(exc, MissingConfigException):
        options = getattr(exc, "options", None)
        hint = f"; available: {', '.join(options)}" if options else "; see the folders of conf/ for the groups"
        return f"{_first_line(exc)}{hint}"
    if isinstance(exc, HydraException):
        return _not_in_conf(exc) or (
            f"{_first_line(exc)}; check the override's spelling (key=value, group=option, +new_key=value)"
        )
    return None


def _omegaconf(exc: BaseException) -> str | None:
    """OmegaConf's multi-line errors (a value of the wrong type for its dataclass field, a key the
    dataclass lacks), raised alone or as the cause of Hydra's composition error: ``<key>: <what>``."""
    if "omegaconf" not in sys.modules:
        return None
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    cause = exc if isinstance(exc, OmegaConfBaseException) else exc.__cause__
    key = getattr(cause, "full_key", None)
    if not isinstance(cause, OmegaConfBaseException) or not key:
        return None
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        section, _, leaf = key.rpartition(".")
        known = section_keys(section)
        if known is not None and leaf not in known:
            where = f" of {section}" if section else ""
            return f"{key}: unknown key; known keys{where}: {', '.join(sorted(known))}"
        return f"{key}: not in conf/; add it with +{key}=<value>"
    what = getattr(cause, "msg", None) or str(cause)
    return f"{key}: {_first_line(Exception(what))}"


def _not_in_conf(exc: BaseException) -> str | None:
    """Hydra's "Could not override 'K'. To append ... use +K=V": an unknown key, or one conf/ leaves out."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    found = re.match(r"Could not override '([^']+)'", lines[0]) if lines else None
    if not found or len(lines) < 2 or " use +" not in lines[1]:
        return None
    key = found.group(1)
    section, _, leaf = key.rpartition(".")
    known = section_keys(section)
    if known is not None and leaf not in known:
        where = f" of {section}" if section else ""
        return f"unknown key {key}; known keys{where}: {', '.join(sorted(known))}"
    return f"{key} is not in conf/; add it with {lines[1].split(' use ', 1)[1]}"


def section_keys(section: str) -> set[str] | None:
    """The keys of config section ``section`` ('' is the top), or None if it is not a section."""
    from pipeline.config import RunConfig

    cls = RunConfig
    for part in filter(None, section.split(".")):
        cls = typing.get_type_hints(cls).get(part)
        if not dataclasses.is_dataclass(cls):
            return None
    return {f.name for f in dataclasses.fields(cls)}


def _mlflow(exc: BaseException) -> str | None:
    if "mlflow" not in sys.modules:  # not imported: the error is not MLflow's (and importing costs seconds)
        return None
    from pipeline.tracking.console import tracking_error_line

    return tracking_error_line(exc, _first_line(exc))


def _ray(exc: BaseException) -> str | None:
    if "ray" not in sys.modules:
        return None
    try:
        from ray.exceptions import RayError
    except ImportError:
        return None
    if isinstance(exc, RayError):
        return f"Ray: {type(exc).__name__}: {_first_line(exc)}; check the cluster (ray status) and cluster.* settings"
    if type(exc).__name__ == "AuthenticationError":
        return f"Ray: {_first_line(exc)}; set RAY_AUTH_MODE=token and the cluster's token (~/.ray/auth_token)"
    return None


def explain(exc: BaseException) -> str:
    """``what; fix`` in one line."""
    from pipeline.config import ConfigError
    from pipeline.run.checkpoint import CheckpointError

    rounds = sys.modules.get(f"{__package__}.rounds")  # imports Ray: only if the run got that far
    ours = (ConfigError, CheckpointError) + ((rounds.ChipError, rounds.ChipFailure) if rounds else ())
    if isinstance(exc, ours):
        return _first_line(exc)
    for known in (_omegaconf, _hydra, _mlflow, _ray):
        line = known(exc)
        if line:
            return line
    if isinstance(exc, ConnectionError) and "Ray" in str(exc):  # ray.init(address=...) found no cluster
        return (
            f"Ray: {_first_line(exc)}; start one (ray start --head) and set cluster.address=auto or "
            "HOST:PORT / ray://head:10001, or use cluster=local"
        )
    if isinstance(exc, ConnectionError):
        return f"{_first_line(exc)}; check that the server it names is running and reachable"
    if isinstance(exc, PermissionError):
        return f"{exc.strerror}: {exc.filename}; choose a folder you can write (output_dir=...)"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or _first_line(exc)}{where}; check the path and free disk space"
    if isinstance(exc, MemoryError):
        return "out of memory; lower trainer.batch_size, set chip.samples_per_pass, or use a smaller chip"
    if isinstance(exc, ValueError):  # this project's own checks raise ValueError with their fix
        return _first_line(exc)
    return (
        f"{type(exc).__name__}: {_first_line(exc)} (an unexpected error; rerun with FFM_TRACEBACK=1 "
        "to see where, and report it)"
    )
