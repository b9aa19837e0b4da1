"""``ffm-rig serve``: slmsuite's Server bound to one host, its allow-list, the role config, the CLI.

Real parts only: a RigServer on 127.0.0.1 (in a thread, or the console script in its own
process) with slmsuite's simulated SLMs and camera, reached through slmsuite's RemoteSLM and
RemoteCamera over real sockets. 127.0.0.2 is a second loopback address (Linux routes all of
127.0.0.0/8 to lo) for a client outside the allow-list and for a server bound elsewhere.
"""

import json
import pathlib
import socket
import subprocess
import sys
import threading
import urllib.parse
import warnings

import numpy as np
import pytest
from conftest import read_line

from optics.rig import hardware as rig_hardware
from optics.rig.hardware import DriverSpec, RigHardware, build_hardware, load_hardware_config
from optics.rig.serve import RigServer, is_loopback, normalize_allowlist, parse_address

FFM_RIG = pathlib.Path(sys.executable).parent / "ffm-rig"
RES = [40, 30]  # (width, height) of the simulated SLMs and camera
SIMULATED = {
    "field_amplitude": {"driver": "simulated_slm", "kwargs": {"resolution": RES}},
    "field_phase": {"driver": "simulated_slm", "kwargs": {"resolution": RES}},
    "camera": {"driver": "simulated_camera", "kwargs": {"slm": {"role": "field_phase"}, "resolution": RES}},
}


def _ffm_rig(*args, **kw):
    assert FFM_RIG.exists(), "the ffm-rig console script is not installed: run make setup"
    return subprocess.run([str(FFM_RIG), *args], capture_output=True, text=True, timeout=120, **kw)


def _one_line_error(run):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("ffm-rig: error: "), run.stderr
    return lines[0]


class _Serving:
    """A RigServer listening in a thread; stopped (and joined) on exit."""

    def __init__(self, hardware, **kw):
        self.server = RigServer(hardware, port=0, **kw)
        self.server.bind()
        self.thread = threading.Thread(target=self.server.listen, daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.server.listening.wait(30), "the server never listened"
        return self.server

    def __exit__(self, *exc):
        self.server.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "stop() did not end listen()"


def _wire(request):
    """slmsuite's encoding of one request (url-quoted JSON, newline-terminated)."""
    return (urllib.parse.quote_plus(json.dumps(request)) + "\n").encode()


def _reply(sock):
    data = read_line(sock)
    return json.loads(urllib.parse.unquote_plus(data.decode().rstrip("\n")))


def _writes(slm):
    """What the server wrote to ``slm`` (slmsuite's SimulatedSLM._set_phase_hw keeps nothing)."""
    if not hasattr(slm, "_writes_seen"):
        slm._writes_seen = []
        slm._set_phase_hw = lambda display: slm._writes_seen.append(np.array(display))
    return slm._writes_seen


def test_remote_slm_and_camera_reach_the_served_hardware():
    from slmsuite.hardware.cameras.remote import RemoteCamera
    from slmsuite.hardware.slms.remote import RemoteSLM

    hw = build_hardware(SIMULATED)
    slm, cam = hw[1], hw[2]
    _writes(slm)
    with _Serving(hw) as server:
        assert server.port > 0 and server.address() == f"127.0.0.1:{server.port}"
        remote_slm = RemoteSLM("field_phase", host="127.0.0.1", port=server.port)
        remote_cam = RemoteCamera("camera", host="127.0.0.1", port=server.port)
        assert remote_slm.shape == slm.shape and remote_cam.shape == cam.shape
        phase = np.linspace(0, 2 * np.pi, slm.shape[1], endpoint=False)[None, :] * np.ones((slm.shape[0], 1))
        remote_slm.set_phase(phase, settle=False)
        # the SLM in the server is written exactly the levels the client computed (a ramp)
        (written,) = _writes(slm)
        np.testing.assert_array_equal(written, np.asarray(remote_slm.display))
        assert len(np.unique(written)) > slm.shape[1] // 2
        image = remote_cam.get_image()
        assert image.shape == cam.shape
        np.testing.assert_array_equal(image, cam.get_image())  # the served camera's frame, unchanged in transit


def test_a_client_outside_the_allowlist_is_refused_unread():
    from slmsuite.hardware.slms.remote import RemoteSLM

    hw = build_hardware(SIMULATED)
    slm = hw[1]
    _writes(slm)
    with _Serving(hw, allowlist=["127.0.0.1"], recv_timeout_s=60) as server:
        # refused before a byte is read: a client that sends nothing still gets the refusal
        # (a server that read first would wait recv_timeout_s = 60 s, then reply a timeout)
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)) as sock:
            assert _reply(sock) == [False, "Client 127.0.0.2 not in allowlist."]
        # ... and a request it sends is not carried out
        display = np.full(slm.shape, 7, dtype=np.uint8)
        request = {"name": "field_phase", "command": "_set_phase_hw", "args": [], "kwargs": {}}
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)) as sock:
            sock.sendall(_wire({**request, "args": [display.tolist()]}))
            try:
                assert _reply(sock)[0] is False
            except ConnectionResetError:  # the server closed with the request unread
                pass
        assert _writes(slm) == []
        # a client on the list is served
        RemoteSLM("field_phase", host="127.0.0.1", port=server.port).set_phase(None, settle=False)
        assert len(_writes(slm)) == 1


def test_the_server_binds_only_the_host_it_is_given():
    from slmsuite.hardware.remote import _Client

    with _Serving(build_hardware(SIMULATED), host="127.0.0.2") as server:
        assert server._sock.getsockname() == ("127.0.0.2", server.port)
        assert _Client.info(host="127.0.0.2", port=server.port, verbose=False)["camera"] == "camera"
        # slmsuite's stock Server binds every interface: it would answer on 127.0.0.1 too
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def test_stop_before_listen_returns_at_once():
    server = RigServer(build_hardware(SIMULATED), port=0)
    server.stop()
    server.listen()  # returns: the stop was not lost
    assert not server.listening.is_set()


def _serve_subprocess(tmp_path, *args):
    err = open(tmp_path / "stderr.txt", "w")  # a file, so a chatty server never blocks on a pipe
    proc = subprocess.Popen([str(FFM_RIG), "serve", *args], stdout=subprocess.PIPE, stderr=err, text=True)
    for line in proc.stdout:  # slmsuite's own log lines may come first
        if line.startswith("ffm-rig: serving "):
            return proc, parse_address(line.split(" on ")[1].split()[0])
    proc.wait(60)
    raise AssertionError(f"ffm-rig serve exited {proc.returncode}: {(tmp_path / 'stderr.txt').read_text()}")


def _stop_subprocess(proc):
    proc.terminate()  # SIGTERM: the server stops and closes its hardware
    assert proc.wait(60) == 0
    proc.stdout.close()


def test_ffm_rig_serve_a_config_in_its_own_process_and_ping_it(tmp_path):
    from slmsuite.hardware.cameras.remote import RemoteCamera
    from slmsuite.hardware.slms.remote import RemoteSLM

    config = tmp_path / "rig.yaml"
    config.write_text(json.dumps(SIMULATED))  # JSON is YAML
    proc, (host, port) = _serve_subprocess(tmp_path, "--config", str(config), "--port", "0", "--allow", "127.0.0.1")
    try:
        assert host == "127.0.0.1"
        ping = _ffm_rig("ping", "--address", f"{host}:{port}")
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.strip() == f"{host}:{port}: field_amplitude (slm), field_phase (slm), camera (camera)"
        remote_slm = RemoteSLM("field_phase", host=host, port=port)
        remote_slm.set_phase(np.zeros(remote_slm.shape), settle=False)
        assert RemoteCamera("camera", host=host, port=port).get_image().shape == (RES[1], RES[0])
    finally:
        _stop_subprocess(proc)


def test_ffm_rig_serve_emulated(tmp_path):
    pytest.importorskip("optics.rig.emulator")
    from slmsuite.hardware.cameras.remote import RemoteCamera
    from slmsuite.hardware.slms.remote import RemoteSLM

    proc, (host, port) = _serve_subprocess(tmp_path, "--emulated", "--port", "0")
    try:
        remote_slm = RemoteSLM("field_phase", host=host, port=port)
        remote_slm.set_phase(np.zeros(remote_slm.shape), settle=False)
        assert RemoteCamera("camera", host=host, port=port).get_image().shape == remote_slm.shape
    finally:
        _stop_subprocess(proc)


def test_ffm_rig_serve_with_a_bad_driver_exits_2_with_one_line(tmp_path):
    config = tmp_path / "rig.yaml"
    config.write_text("field_amplitude: {driver: no_such_slm}\nfield_phase: simulated_slm\ncamera: simulated_camera\n")
    line = _one_line_error(_ffm_rig("serve", "--config", str(config), "--port", "0"))
    assert "field_amplitude" in line and "no_such_slm" in line and "meadowlark" in line


@pytest.mark.parametrize(
    "args,words",
    [
        (["serve", "--emulated", "--allow", "lab-pc"], ["--allow", "lab-pc"]),
        (["serve", "--emulated", "--port", "70000"], ["--port", "70000"]),
        (["serve", "--config", "/no/such/rig.yaml"], ["--config", "/no/such/rig.yaml"]),
        (["serve", "--emulated", "--host", "::1"], ["--host", "IPv4"]),  # slmsuite's clients speak IPv4
        (["serve"], ["--config", "--emulated"]),
        (["ping", "--address", "lab-pc"], ["--address", "HOST:PORT"]),
    ],
)
def test_ffm_rig_bad_input_exits_2_with_one_line(args, words):
    line = _one_line_error(_ffm_rig(*args))
    assert all(w in line for w in words), line


def test_ffm_rig_ping_a_closed_port_exits_2_with_one_line():
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        line = _one_line_error(_ffm_rig("ping", "--address", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in line and "ffm-rig serve" in line


def test_loopback_allowlist_and_address_parsing():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0")
    assert normalize_allowlist(None) is None and normalize_allowlist([" 10.0.0.7"]) == ["10.0.0.7"]
    assert parse_address("lab-pc:5025") == ("lab-pc", 5025)
    for bad in ("lab-pc", ":5025", "lab-pc:0", "lab-pc:x"):
        with pytest.raises(ValueError, match="--address"):
            parse_address(bad)


# the role schema


def test_roles_names_and_the_design_phase_default():
    rig = RigHardware.from_mapping(SIMULATED)
    assert rig.names() == {
        "field_amplitude": "field_amplitude",
        "field_phase": "field_phase",
        "camera": "camera",
        "design_phase": "field_phase",  # Xue et al.: the loader's phase SLM also shows the design
    }
    own = RigHardware.from_mapping(
        {**SIMULATED, "design_phase": {"driver": "simulated_slm", "kwargs": {"resolution": RES, "name": "dslm"}}}
    )
    assert own.names()["design_phase"] == "dslm"
    assert [h.name for h in build_hardware(own)] == ["field_amplitude", "field_phase", "dslm", "camera"]
    assert isinstance(own.design_phase, DriverSpec) and own.design_phase.driver == "simulated_slm"


@pytest.mark.parametrize(
    "change,words",
    [
        ({"projector": {"driver": "simulated_slm"}}, ["projector", "field_amplitude", "intensity_camera"]),
        ({"camera": None}, ["camera"]),
        ({"field_phase": {"driver": "flir"}}, ["field_phase", "flir", "an SLM", "meadowlark"]),
        ({"camera": {"driver": "meadowlark"}}, ["camera", "meadowlark", "a camera", "flir"]),
        ({"camera": {"driver": "flir", "serial": "1"}}, ["camera.serial", "kwargs"]),
        ({"camera": {"driver": "flir", "kwargs": [1]}}, ["camera.kwargs"]),
        ({"field_amplitude": {"driver": "simulated_slm", "kwargs": {"name": "field_phase"}}}, ["field_phase", "twice"]),
    ],
)
def test_bad_role_configs_give_one_line(change, words):
    mapping = {k: v for k, v in {**SIMULATED, **change}.items() if v is not None}
    with pytest.raises(ValueError) as info:
        RigHardware.from_mapping(mapping)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words), info.value


def test_config_files_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "rig.yaml"
    yaml_file.write_text(
        "field_amplitude: {driver: meadowlark, kwargs: {slm_number: 1}}\n"
        "field_phase: {driver: hamamatsu}\n"
        "camera:\n  driver: flir\n  kwargs: {serial: '20123456'}\n"
    )
    rig = load_hardware_config(yaml_file)
    assert rig.field_amplitude == DriverSpec("meadowlark", {"slm_number": 1})
    assert rig.camera.kwargs == {"serial": "20123456"} and rig.field_phase.kwargs == {}
    json_file = tmp_path / "rig.json"
    json_file.write_text(json.dumps(SIMULATED))
    assert load_hardware_config(json_file) == RigHardware.from_mapping(SIMULATED)
    json_file.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hardware_config(json_file)
    yaml_file.write_text("field_amplitude: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_hardware_config(yaml_file)


def test_a_driver_whose_sdk_is_missing_gives_one_line(monkeypatch):
    monkeypatch.setitem(rig_hardware.DRIVERS, "acme", {"camera": "ffm_no_such_vendor_sdk.AcmeCamera"})
    with pytest.raises(RuntimeError) as info:
        build_hardware({**SIMULATED, "camera": {"driver": "acme"}})
    message = str(info.value)
    assert "\n" not in message and "acme" in message and "ffm_no_such_vendor_sdk" in message
    # slmsuite's FLIR driver imports without PySpin (and warns) and fails when opened
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(RuntimeError) as info:
            build_hardware({**SIMULATED, "camera": {"driver": "flir"}})
    assert "\n" not in str(info.value) and "flir" in str(info.value)


def test_a_role_reference_must_name_a_role_built_before_it():
    mapping = {**SIMULATED, "field_amplitude": {"driver": "simulated_slm", "kwargs": {"source": {"role": "camera"}}}}
    with pytest.raises(ValueError, match="field_amplitude.kwargs.source refers to role 'camera'"):
        build_hardware(mapping)
