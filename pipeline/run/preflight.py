"""Checks that run in the driver before any actor or MLflow run exists.

A bad value must be one line naming the key and the fix, not a dead actor 30 s later:

- :func:`check_chips`: every chip's hidden spacings, the propagation grid and its padding
  (the aliasing guardrail), and the memory one chip needs, computed here from the same
  functions the chip uses (no fields are allocated);
- :func:`check_resources`: the CPUs, GPUs and custom resources the chips ask for against
  what the Ray cluster has (a chip that cannot be placed would wait forever);
- :func:`check_output_dir`: the output folder can be written (checkpoints go there).

Each raises :class:`pipeline.config.ConfigError`; warnings (marginal padding) are returned
as lines for the console.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import tempfile

import numpy as np

from pipeline import chips
from pipeline.chips import system_of
from pipeline.chips.base import resources_of
from pipeline.config import ConfigError


def check_chips(chips: tuple, batch: int, memory_bytes: float | None) -> list[str]:
    """Each chip system's own preflight of every chip spec (propagation grid, padding, memory);
    returns warning lines; a bad value raises ConfigError with the adapter's one line."""
    notes: list[str] = []
    for spec in chips:
        try:
            notes += system_of(spec).preflight(spec, batch, memory_bytes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return list(dict.fromkeys(notes))


def check_backend(backend: str, local: bool) -> None:
    """``chip.backend=cupy`` on a local cluster needs CuPy and a CUDA device in this process."""
    if backend != "cupy" or not local:
        return
    from optics.core.backend import gpu_available

    if not gpu_available():
        raise ConfigError(
            "chip.backend=cupy needs CuPy and a CUDA device on this machine; install "
            "ffm-optics[gpu] (or [gpu-cuda13]) on a GPU host, or use chip.backend=numpy"
        )


def check_resources(
    n_chips: int, num_cpus: float, num_gpus: float, custom: dict, total: dict, cluster: str = "the Ray cluster has"
) -> None:
    """Every chip must fit at once (a round waits for all of them): ``n_chips x`` each request."""
    wanted = {
        "CPU": n_chips * num_cpus,
        "GPU": n_chips * num_gpus,
        **{name: n_chips * float(v) for name, v in custom.items()},
    }
    keys = {"CPU": "chip.num_cpus", "GPU": "chip.num_gpus"}
    for name, need in wanted.items():
        have = float(total.get(name, 0.0))
        if need > have + 1e-9:
            key = keys.get(name, f"chip.resources.{name}")
            raise ConfigError(
                f"{key}: {n_chips} chips need {need:g} {name} in all but {cluster} {have:g}; "
                f"lower {key} or topology.n_chips, or add nodes (an autoscaling cluster: "
                "cluster.check_resources=false)"
            )


def local_resources(cfg) -> dict[str, float]:
    """The custom resources a local cluster advertises: what the chip system needs per chip, once
    per chip (``chip=rig``: one ``optical_chip`` per rig). ``chip.resources`` beyond that is not
    advertised: a simulated chip asking for ``optical_chip`` has no rig here."""
    if cfg.cluster.kind != "local":
        return {}
    need = resources_of(chips.system(cfg.chip.kind), {})
    return {name: cfg.topology.n_chips * v for name, v in need.items()}


def check_output_dir(path: str) -> bool:
    """Create (if needed) and test-write ``path``; returns whether this call created it."""
    created = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise ConfigError(
            f"output_dir={path} cannot be written ({exc.strerror}); choose a writable output_dir=<folder>"
        ) from None
    return created


def memory_of_this_machine() -> float | None:
    """Physical memory in bytes (a local cluster's budget), or None where it cannot be read."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def finite_phases(params: dict, source: str) -> None:
    """Masks loaded from a file must be finite numbers."""
    for group, arrays in params.items():
        for name, value in arrays.items():
            if not np.all(np.isfinite(value)):
                raise ConfigError(
                    f"{source} has non-finite values in {group}/{name}; load masks from a finished run's phases.npz"
                )


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_inputs(cfg) -> None:
    """What ``ffm-train`` checks from the config alone, before the split, the chips or Ray are even
    imported (seconds on a loaded machine): the IDX folder, the tracking store, the resume source,
    the masks file, where the output folder would go, and what a local cluster will hold or a
    remote one answers. The driver checks these again later; here they are cheap and early."""
    _check_idx(cfg.task)
    if cfg.tracking.kind == "mlflow":
        from pipeline.tracking.server import default_uri, probe

        probe(cfg.tracking.uri or default_uri(cfg.paths.root), cfg.tracking.probe_timeout_s)
    _check_resume(cfg)
    if cfg.trainer.masks_from and not os.path.exists(cfg.trainer.masks_from):
        raise ConfigError(
            f"trainer.masks_from={cfg.trainer.masks_from} does not exist; point it at a finished run's phases.npz"
        )
    _check_output_parent(cfg.output_dir)
    from pipeline.run.ray_cluster import check_auth_mode

    check_auth_mode()
    check_backend(cfg.chip.backend, cfg.cluster.kind == "local")
    if cfg.cluster.kind == "local" and cfg.cluster.check_resources:
        c = cfg.chip
        total = {"CPU": float(cfg.cluster.num_cpus or os.cpu_count() or 1), "GPU": _local_gpus()}
        check_resources(
            cfg.topology.n_chips,
            c.num_cpus,
            c.num_gpus,
            resources_of(chips.system(c.kind), c.resources),
            total | local_resources(cfg),
            "a local Ray cluster (cluster=local) has",
        )
    if cfg.cluster.kind == "address":
        _check_ray_address(cfg.cluster.address, 5.0)


def _check_idx(task) -> None:
    if task.name != "idx":
        return
    if not os.path.isdir(task.data_dir):
        raise ConfigError(
            f"task.data_dir={task.data_dir} is not a folder; point it at the folder of MNIST/Fashion-MNIST IDX files"
        )
    for stem in IDX_FILES:
        if not any(os.path.isfile(os.path.join(task.data_dir, stem + ext)) for ext in ("", ".gz")):
            raise ConfigError(
                f"task.data_dir={task.data_dir} has no {stem}[.gz]; put the MNIST/Fashion-MNIST IDX files there"
            )


def _check_resume(cfg) -> None:
    """resume=: an intact checkpoint (checksum, readable), or a run id whose store exists."""
    from pipeline.run.checkpoint import CheckpointError, load

    if not cfg.resume:
        return
    if os.path.exists(cfg.resume):
        load(cfg.resume)
    elif not re.fullmatch(r"[0-9a-f]{32}", cfg.resume):
        raise CheckpointError(
            f"resume={cfg.resume} is neither a checkpoint file nor an MLflow run id (32 hex "
            "digits); pass outputs/<run>/checkpoints/latest.npz or the run id"
        )
    else:
        _check_resume_store(cfg)


def _check_output_parent(path: str | None) -> None:
    """The output folder can be made: a folder can be made (and is removed again) in its nearest
    existing ancestor. Nothing is left behind."""
    if not path:
        return
    here = os.path.abspath(path)
    while not os.path.exists(here):
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        raise ConfigError(
            f"output_dir={path} cannot be created: {here} is a file; choose a writable output_dir=<folder>"
        )
    if here != os.path.abspath(path):
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".ffm-write-test-", dir=here))
        except OSError as exc:
            raise ConfigError(
                f"output_dir={path} cannot be created in {here} ({exc.strerror}); choose a writable output_dir=<folder>"
            ) from None


def _check_ray_address(address: str, timeout_s: float) -> None:
    """cluster.address=HOST:PORT or ray://HOST:PORT must accept a connection (Ray itself retries for minutes)."""
    found = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    if address.strip() in ("auto", "local") or not found:
        return
    try:
        socket.create_connection((found.group(1), int(found.group(2))), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"cluster.address={address} is not reachable ({exc.strerror or exc}); start the cluster "
            "(ray start --head) or correct cluster.address (auto on a cluster node, ray://head:10001)"
        ) from None


def _check_resume_store(cfg) -> None:
    """resume=<run id> with a SQLite store that does not exist: no such run (and MLflow would create it)."""
    from pipeline.tracking.server import default_uri

    rid = cfg.resume
    if cfg.tracking.kind != "mlflow":
        return
    uri = cfg.tracking.uri or default_uri(cfg.paths.root)
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///") :]):
        raise ConfigError(
            f"resume={rid} is an MLflow run id but the tracking store {uri} does not exist; point "
            "MLFLOW_TRACKING_URI (or tracking.uri=...) at the original run's store, or pass its "
            "checkpoint: resume=<output_dir>/checkpoints/latest.npz"
        )


def _local_gpus() -> float:
    """GPUs a local Ray cluster would see: none without an NVIDIA device; unknown (inf) otherwise."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0.0
    return float("inf") if glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") else 0.0
