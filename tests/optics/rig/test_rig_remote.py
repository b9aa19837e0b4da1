"""RigChip over slmsuite's TCP protocol: an emulated rig in its own process on 127.0.0.1."""

import socket
import threading

import numpy as np
import pytest
from conftest import read_line

from optics.core import ffm
from optics.core.backend import get_backend
from optics.core.data import encode_amplitude
from optics.diffractive.chip import DigitalTwin
from optics.diffractive.geometry import Geometry
from optics.rig.chip import RigChip, RigRoles, RigSettings, RigUnreachable, connect_rig
from optics.rig.emulator import EmulatorSpec, free_port, start_emulated_rig

G = Geometry.small()


def _step(address: str, timeout_s: float = 5.0):
    """Calibrate a rig at ``address`` and take one FFM step on 6 digits; returns (gradient, counters)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, labels = encode_amplitude(digits.images[:6] / 16.0, G.n, G.object_px), digits.target[:6]
    be = get_backend("numpy", "complex64")
    chip = RigChip(G, connect_rig(address, RigRoles(), timeout_s), RigSettings(virtual_clock=True), be)
    chip.calibrate(DigitalTwin(G, be, relay_input=True))
    chip.program(np.full(G.phase_shape, np.pi))
    step = ffm.forward_only_step(chip, x, labels, ffm.Objective(), 0, range(6))
    return step.grad_phase, chip.counters()


def test_an_uninterrupted_emulated_run_reproduces_exactly():
    spec = EmulatorSpec(seed=5)
    with start_emulated_rig(spec) as rig:
        first, counted = _step(rig.address)
    with start_emulated_rig(spec) as rig:
        second, _ = _step(rig.address)
    np.testing.assert_array_equal(first, second)
    assert counted["frames"] > 0 and counted["retries"] == 0


def test_a_stalled_frame_and_a_failing_frame_are_retried():
    # frame 80 falls in the training step (the calibrations take about 60); it stalls past the client's
    # 1 s timeout, so the client gives up on it and asks again; frame 90 fails on the server
    spec = EmulatorSpec(seed=5, fault_frames=(80,), fault_kind="timeout", fault_sleep_s=1.5)
    with start_emulated_rig(spec) as rig:
        grad, counted = _step(rig.address, timeout_s=1.0)
    assert counted["retries"] >= 1 and np.isfinite(grad).all()
    spec = EmulatorSpec(seed=5, fault_frames=(90,), fault_kind="drop")
    with start_emulated_rig(spec) as rig:
        grad, counted = _step(rig.address)
    assert counted["retries"] == 1 and np.isfinite(grad).all()


class DroppingProxy:
    """A TCP relay to ``target`` that cuts the connections numbered in ``drop`` (counted from 0)
    after reading their request, with no reply: a link to the lab PC that drops."""

    def __init__(self, target: tuple[str, int], drop: set[int]):
        self.target, self.drop, self.count = target, drop, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                request = read_line(client)
                index, self.count = self.count, self.count + 1
                if index in self.drop:
                    continue  # closed without a reply
                with socket.create_connection(self.target) as upstream:
                    upstream.sendall(request)
                    client.sendall(read_line(upstream))

    def close(self):
        self.sock.close()


def test_a_dropped_connection_is_retried():
    with start_emulated_rig(EmulatorSpec(seed=5)) as rig:
        host, port = rig.address.rsplit(":", 1)
        proxy = DroppingProxy((host, int(port)), drop={200, 260})  # calls 200 and 260: in the training step
        try:
            grad, counted = _step(proxy.address)
        finally:
            proxy.close()
    assert counted["retries"] == 2 and np.isfinite(grad).all()


def test_unknown_hardware_and_unreachable_rigs_are_one_line_errors():
    with start_emulated_rig(EmulatorSpec()) as rig:
        with pytest.raises(ValueError, match="no hardware named .*'nope'"):
            connect_rig(rig.address, RigRoles(camera="nope"), 2.0)
    with pytest.raises(RigUnreachable, match="no slmsuite server answers"):
        connect_rig(f"127.0.0.1:{free_port()}", RigRoles(), 1.0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        connect_rig("localhost", RigRoles(), 1.0)
