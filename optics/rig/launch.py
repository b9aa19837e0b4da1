"""Start an emulated rig in its own process on this machine: ``ffm-rig serve --emulated``.

:func:`start_emulated_rig` runs the server as a child process bound to ``host`` (127.0.0.1
by default) on a free port and waits until it answers slmsuite's ``ping``; the returned
:class:`EmulatedRig` stops it (also as a context manager).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from optics.rig.emulator import EmulatorSpec


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when an slmsuite server at ``host:port`` answers ``ping``."""
    from slmsuite.hardware.remote import _Client

    try:
        _Client.info(host=host, port=port, timeout=timeout_s, verbose=False)
    except (OSError, RuntimeError, ValueError):
        return False
    return True


class EmulatedRig:
    """A running ``ffm-rig serve --emulated`` process; ``address`` is ``HOST:PORT``."""

    def __init__(self, spec: EmulatorSpec, host: str = "127.0.0.1", start_timeout_s: float = 60.0):
        self.spec, self.host = spec, host
        self.port = free_port(host)
        command = [sys.executable, "-m", "optics.rig.serve", "serve", "--emulated", "--spec-json", spec.to_json()]
        command += ["--host", host, "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + start_timeout_s
        while not answers(host, self.port, timeout_s=0.5):
            if self.process.poll() is not None:
                err = (self.process.stderr.read() or "").strip().splitlines()
                raise RuntimeError(f"emulated rig exited at start: {err[-1] if err else self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulated rig did not answer on {host}:{self.port} within {start_timeout_s} s")
            time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server process (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> EmulatedRig:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_emulated_rig(spec: EmulatorSpec, host: str = "127.0.0.1") -> EmulatedRig:
    """Start an emulated rig serving ``spec`` on ``host`` (a free port); see :class:`EmulatedRig`."""
    return EmulatedRig(spec, host)
