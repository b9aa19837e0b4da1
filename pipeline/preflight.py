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

import os
import warnings

import numpy as np

from optics.geometry import Geometry
from optics.imperfections import draw_hidden_state
from optics.propagation import SamplingWarning, choose_padded_size

from .config import ConfigError

MAX_PADDED_PX = 16384          # a 16384^2 complex64 field is 2 GiB: beyond any chip's budget
GIB = 1024 ** 3


def chip_bytes(g: Geometry, n_pad: int, batch: int, itemsize: int, threads: int) -> int:
    """Memory of one chip's training round, bytes: ``(L+1)`` transfer functions on the padded
    grid, the data and error taps of ``batch`` samples (``2 (L+1)`` fields of ``n^2`` each),
    and a padded workspace per FFT thread (with its plan buffers, about 4 fields)."""
    taps = 2 * (g.n_layers + 1) * batch * g.n * g.n
    return itemsize * ((g.n_layers + 1) * n_pad * n_pad + taps + 4 * threads * n_pad * n_pad)


def check_chips(chips: tuple, batch: int, memory_bytes: float | None) -> list[str]:
    """Propagation, padding and memory of every diffractive chip spec; returns warning lines."""
    notes: list[str] = []
    for spec in chips:
        g = spec.geometry
        if not isinstance(g, Geometry):
            continue
        try:
            hidden = draw_hidden_state(spec.hardware, g, spec.seed)
            z = g.distance + float(np.abs(hidden.distances - g.distance).max())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SamplingWarning)
                n_pad = choose_padded_size(g.n, g.pitch, g.wavelength, z, pad=g.pad, force=g.force_padding)
        except ValueError as exc:
            raise ConfigError(f"chip (chip {spec.index}, seed {spec.seed}): {exc}") from None
        notes += [f"chip {spec.index}: {w.message}" for w in caught]
        if n_pad > MAX_PADDED_PX:
            raise ConfigError(f"chip: the propagation grid would be {n_pad} x {n_pad} px (n={g.n}, distance="
                              f"{g.distance:g} m, pitch={g.pitch:g} m); at most {MAX_PADDED_PX}: lower chip.distance "
                              "or chip.n, or set chip.pad")
        itemsize = 16 if spec.precision == "complex128" else 8
        need = chip_bytes(g, n_pad, spec.samples_per_pass or batch, itemsize, spec.fft_threads or 1)
        if memory_bytes and need > memory_bytes:
            raise ConfigError(f"chip: one chip needs about {need / GIB:.1f} GiB (grid {n_pad}^2 px, "
                              f"{spec.samples_per_pass or batch} samples per pass) but the cluster has "
                              f"{memory_bytes / GIB:.1f} GiB; lower trainer.batch_size, set chip.samples_per_pass, "
                              "or lower chip.n / chip.distance")
    return list(dict.fromkeys(notes))


def check_backend(backend: str, local: bool) -> None:
    """``chip.backend=cupy`` on a local cluster needs CuPy and a CUDA device in this process."""
    if backend != "cupy" or not local:
        return
    from optics.backend import gpu_available  # noqa: PLC0415

    if not gpu_available():
        raise ConfigError("chip.backend=cupy needs CuPy and a CUDA device on this machine; install "
                          "ffm-optics[gpu] (or [gpu-cuda13]) on a GPU host, or use chip.backend=numpy")


def check_resources(n_chips: int, num_cpus: float, num_gpus: float, custom: dict, total: dict) -> None:
    """Every chip must fit at once (a round waits for all of them): ``n_chips x`` each request."""
    wanted = {"CPU": n_chips * num_cpus, "GPU": n_chips * num_gpus,
              **{name: n_chips * float(v) for name, v in custom.items()}}
    keys = {"CPU": "chip.num_cpus", "GPU": "chip.num_gpus"}
    for name, need in wanted.items():
        have = float(total.get(name, 0.0))
        if need > have + 1e-9:
            key = keys.get(name, f"chip.resources.{name}")
            raise ConfigError(f"{key}: {n_chips} chips need {need:g} {name} in all but the Ray cluster has "
                              f"{have:g}; lower {key} or topology.n_chips, or add nodes (an autoscaling cluster: "
                              "cluster.check_resources=false)")


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
        raise ConfigError(f"output_dir={path} cannot be written ({exc.strerror}); choose a writable "
                          "output_dir=<folder>") from None
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
                raise ConfigError(f"{source} has non-finite values in {group}/{name}; "
                                  "load masks from a finished run's phases.npz")

