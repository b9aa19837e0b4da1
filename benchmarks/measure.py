"""Measuring tools of the benchmarks: a clock for CPU and GPU steps, the peak memory of one
step, and the machine a result was measured on."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def cpu_step_peak_mb(fn) -> float | None:
    """Rise of peak RSS over one call of ``fn`` (MB), or None where the kernel does not allow a reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - base) / 1024.0


class Clock:
    """Seconds of ``fn()``: perf_counter on the CPU; CUDA events (after a device sync) on the GPU."""

    def __init__(self, device: str, cp=None, torch=None):
        self.device, self.cp, self.torch = device, cp, torch

    def sync(self):
        if self.device == "gpu":
            if self.torch is not None:
                self.torch.cuda.synchronize()
            self.cp.cuda.Device().synchronize()

    def __call__(self, fn) -> float:
        if self.device == "cpu":
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        self.sync()
        start, end = self.cp.cuda.Event(), self.cp.cuda.Event()
        start.record()
        fn()
        self.sync()
        end.record()
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end) / 1e3


def machine(device: str, torch, cp) -> dict:
    info = {
        "host": platform.node(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": platform.processor(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import pyfftw

        info["pyfftw"] = pyfftw.__version__
    except ImportError:
        info["pyfftw"] = None
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if cp is not None:
        props = cp.cuda.runtime.getDeviceProperties(0)
        info |= {
            "gpu": props["name"].decode(),
            "cupy": cp.__version__,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        }
    return info
