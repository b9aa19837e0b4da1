"""FFTW wisdom shared by every process on a machine: measured plans, reproducible results.

``FFTW_MEASURE`` times candidate algorithms and keeps the fastest, so two processes may pick
different algorithms for the same transform and their results differ in the last bits.
``FFTW_ESTIMATE`` is deterministic but can be very slow: for a single 256 x 256 complex64
field on the 2-core AMD EPYC reference machine it chose a plan taking 1.83 ms against
0.26 ms measured (7x); at 264 x 264, 1.35x.

The remedy FFTW itself offers is *wisdom*: the record of the plans chosen. Before planning,
a process imports the wisdom file; a transform already in it is planned from it without
measuring (the same algorithm, so bitwise the same results); a new one is measured and the
merged wisdom written back. A file lock (``fcntl.flock``) serialises this, so processes
starting together (Ray actors) do not measure the same transform twice.

The file is ``$FFM_FFTW_WISDOM`` when set (``off`` disables sharing), else
``~/.cache/ffm-optics/fftw-wisdom-<cpu, FFTW and pyFFTW versions>.json``: one file per kind of
machine, so a file on a shared home gives nodes of one CPU type the same plans. A missing,
unreadable or corrupt file only costs measuring again; it never changes what is computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile

ENV = "FFM_FFTW_WISDOM"


def wisdom_path() -> str | None:
    """The wisdom file for this kind of machine, or None when sharing is off (``FFM_FFTW_WISDOM=off``)."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else env
    import pyfftw

    key = "|".join(
        [
            platform.machine(),
            _cpu_model(),
            str(getattr(pyfftw, "__version__", "?")),
            str(getattr(pyfftw, "fftw_version", "?")),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "ffm-optics", f"fftw-wisdom-{digest}.json")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def planned(make_plan):
    """``make_plan()`` with the machine's wisdom imported first and the merged wisdom saved after."""
    import pyfftw

    path = wisdom_path()
    if path is None:
        return make_plan()
    with _locked(path):
        _import(pyfftw, path)
        plan = make_plan()
        _export(pyfftw, path)
    return plan


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive lock on ``path + '.lock'`` (no lock where the folder cannot be written)."""
    try:
        import fcntl

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _import(pyfftw, path: str) -> None:
    try:
        with open(path) as f:
            entries = json.load(f)
        pyfftw.import_wisdom(tuple(e.encode("latin-1") for e in entries))
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # no file yet, or a damaged one: plan by measuring; the export below rewrites it


def _export(pyfftw, path: str) -> None:
    """Write the process's wisdom atomically (a temporary file renamed over the old one)."""
    try:
        entries = [w.decode("latin-1") for w in pyfftw.export_wisdom()]
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".wisdom-")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder: this process still has its plans
