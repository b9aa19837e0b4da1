"""The coordinator host's load as MLflow system metrics, sampled by a daemon thread.

Every ``interval_s`` seconds, :func:`sample` reads psutil: CPU utilisation (percent of all
cores since the last sample), memory in use (MB and percent), network bytes received and sent
since the start (MB), and the disk usage of the output folder's file system (percent). MLflow's
UI shows metrics named ``system/...`` in its "System metrics" section; the step is whole
seconds since the run started, so a resumed run continues the same axis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MB = 1024.0**2


def sample(net_start, disk_path: str = ".") -> dict[str, float]:
    """One reading of this host (``net_start``: psutil's network counters at the run's start)."""
    import psutil

    mem, net = psutil.virtual_memory(), psutil.net_io_counters()
    out = {
        "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
        "system/system_memory_usage_megabytes": (mem.total - mem.available) / MB,
        "system/system_memory_usage_percentage": float(mem.percent),
        "system/network_receive_megabytes": (net.bytes_recv - net_start.bytes_recv) / MB,
        "system/network_transmit_megabytes": (net.bytes_sent - net_start.bytes_sent) / MB,
    }
    try:
        out["system/disk_usage_percentage"] = float(psutil.disk_usage(disk_path).percent)
    except OSError:  # the folder went away: leave the disk out
        pass
    return out


class SystemSampler:
    """``log(metrics, step)`` every ``interval_s`` seconds until :meth:`stop` (a daemon thread)."""

    def __init__(self, log: Callable[[dict, int], None], interval_s: float, start_s: float, disk_path: str = "."):
        self.log, self.interval_s, self.start_s, self.disk_path = log, interval_s, start_s, disk_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ffm-system-metrics", daemon=True)

    def start(self) -> SystemSampler:
        import psutil

        self._net_start = psutil.net_io_counters()
        self._thread.start()
        return self

    def _run(self) -> None:
        import psutil

        psutil.cpu_percent(interval=None)  # starts the CPU interval, per thread: in this one
        while not self._stop.wait(self.interval_s):
            step = int(time.time() - self.start_s)
            try:
                self.log(sample(self._net_start, self.disk_path), step)
            except Exception:  # noqa: BLE001  (a reading or the spool failed: the run goes on)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
