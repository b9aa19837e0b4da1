"""A search space over config keys, checked before anything starts (no Ray, no Optuna here).

``search.space`` maps a dotted config key to one distribution::

    trainer.lr: {type: loguniform, low: 0.01, high: 0.5}
    trainer.temperature: {type: uniform, low: 0.001, high: 0.01}
    trainer.batch_size: {type: int, low: 16, high: 64}
    trainer.optimizer: {type: choice, values: [adam, sgd]}

Every key must exist in the run's configuration (or sit under a free-form mapping such as
``chip.hardware``), every range must be non-empty, a log range positive, and each value a
trial can draw must pass the same checks a run's own value does (``trainer.lr`` positive,
``chip.level`` at most 10, ...): :func:`parse_space` tries the bounds and every choice.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from pipeline.config import ConfigError, load_config
from pipeline.sweeps.grid import set_key

KINDS = ("loguniform", "uniform", "int", "choice")
OBJECTIVES = ("val_accuracy",)


@dataclass(frozen=True)
class Param:
    """One searched key: ``kind`` in :data:`KINDS`; ``low``/``high`` for ranges, ``values`` for choice."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    def corners(self) -> list:
        """The values that bound what a trial can draw: both ends of a range, every choice."""
        return list(self.values) if self.kind == "choice" else [self.low, self.high]


def parse_space(space: dict, base: dict) -> list[Param]:
    """The checked parameters of ``space`` (see the module docstring) for the config mapping ``base``."""
    if not space:
        raise ConfigError(
            "search.space is empty; give at least one key, "
            "e.g. search.space.trainer.lr={type:loguniform,low:0.01,high:0.5}"
        )
    params = [_param(key, spec) for key, spec in flatten(space).items()]
    for p in params:
        for value in p.corners():
            trial = copy.deepcopy(base)
            trial["search"] = {"name": None}
            set_key(trial, p.key, value, f"search.space.{p.key}")
            try:
                load_config(trial)
            except ConfigError as exc:
                raise ConfigError(f"search.space.{p.key}: the value {value!r} is refused: {exc}") from None
    return params


def flatten(space: dict, prefix: str = "") -> dict:
    """``{trainer: {lr: {type: ...}}}`` (a command-line override) as ``{"trainer.lr": {type: ...}}``:
    a mapping with a ``type`` is a distribution, any other mapping a config section."""
    out = {}
    for key, spec in space.items():
        if isinstance(spec, dict) and "type" not in spec and spec:
            out |= flatten(spec, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = spec
    return out


def _param(key: str, spec) -> Param:
    where = f"search.space.{key}"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise ConfigError(f"{where}: give {{type: {'|'.join(KINDS)}, ...}}, not {spec!r}")
    kind = spec["type"]
    unknown = sorted(set(spec) - {"type", "values"} if kind == "choice" else set(spec) - {"type", "low", "high"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for type {kind}")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list | tuple) or not values:
            raise ConfigError(f"{where}: a choice needs a non-empty list, e.g. values: [adam, sgd]")
        return Param(key, kind, values=tuple(values))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise ConfigError(f"{where}: low and high must be finite numbers, got low={low!r} high={high!r}")
    if not low < high:
        raise ConfigError(f"{where}: the range is empty (low={low} >= high={high}); set low < high")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: a loguniform range needs low > 0, got {low}")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise ConfigError(f"{where}: an int range needs whole bounds, got low={low} high={high}")
    return Param(key, kind, float(low) if kind != "int" else int(low), float(high) if kind != "int" else int(high))


def check_search(search, base: dict) -> list[Param]:
    """Everything about ``search`` a bad value could break, before Ray or MLflow: the space
    (:func:`parse_space`), the objective and ASHA's settings; returns the parameters."""
    if search.objective not in OBJECTIVES:
        raise ConfigError(f"search.objective={search.objective!r}; known: {', '.join(OBJECTIVES)}")
    if search.reduction_factor <= 1:
        raise ConfigError(f"search.reduction_factor={search.reduction_factor}: ASHA keeps 1/rf per rung; set rf > 1")
    if search.resume not in ("auto", "never"):
        raise ConfigError(f"search.resume={search.resume!r}; use auto (continue the same search) or never")
    epochs = base["trainer"]["epochs"]
    if search.grace_epochs > epochs:
        raise ConfigError(
            f"search.grace_epochs={search.grace_epochs} is more than trainer.epochs={epochs}; "
            "no trial could be stopped early: lower it or train longer"
        )
    params = parse_space(search.space, base)
    if any(p.key == "trainer.epochs" for p in params):
        raise ConfigError(
            "search.space.trainer.epochs: ASHA stops trials at epoch boundaries up to trainer.epochs, "
            "so every trial trains the same number of epochs; search other keys"
        )
    if search.default_first:
        _check_default(params, base)
    return params


def _check_default(params: list[Param], base: dict) -> None:
    """Trial 0 is the configuration's own values: each must exist and lie in its range or choices."""
    for p, value in zip(params, default_point(params, base).values(), strict=True):
        inside = (
            value in p.values if p.kind == "choice" else isinstance(value, int | float) and p.low <= value <= p.high
        )
        if not inside:
            raise ConfigError(
                f"search.space.{p.key}: the configuration's own value {value!r} (trial 0) is outside "
                f"the space; widen the space, set {p.key}, or set search.default_first=false"
            )


def apply(base: dict, point: dict) -> dict:
    """``base`` with the trial's ``point`` (dotted key -> value) set."""
    d = copy.deepcopy(base)
    for key, value in point.items():
        set_key(d, key, value, f"search.space.{key}")
    return d


def default_point(params: list[Param], base: dict) -> dict:
    """The configuration's own value of each searched key (trial 0 with ``search.default_first``)."""
    out = {}
    for p in params:
        node = base
        for part in p.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[p.key] = node  # None: a free-form key the configuration does not set
    return out
