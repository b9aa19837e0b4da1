"""The local Ray cluster listens on loopback only and runs with token auth (pipeline/ray_cluster.py).

Uses the session's one cluster (``ray_cluster`` fixture, started by ``start_local``); the
refusal of ``RAY_AUTH_MODE=disabled`` is checked on the functions, without a second cluster.
"""

from __future__ import annotations

import ipaddress
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.run import ray_cluster as rc

README = Path(__file__).resolve().parents[3] / "deploy" / "README.md"
ALLOWLIST_HEADING = "### Listeners of a local cluster off loopback"


def allowlist() -> list[dict[str, str]]:
    """Rows of the table under ALLOWLIST_HEADING in deploy/README.md (process, port, bind, why)."""
    lines = README.read_text().splitlines()
    assert ALLOWLIST_HEADING in lines, f"deploy/README.md lost its heading {ALLOWLIST_HEADING!r}"
    table = []
    for line in lines[lines.index(ALLOWLIST_HEADING) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    assert table[:1] == [["process", "port", "bind", "why"]], table[:2]
    rows = [dict(zip(table[0], cells)) for cells in table[2:]]
    for row in rows:
        assert row["process"] and row["why"] and (row["port"] == "any" or row["port"].isdigit()), row
    return rows


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:127.0.0.1 (a dual-stack socket)
        addr = addr.ipv4_mapped
    return addr.is_loopback


def allowed(name: str, ip: str, port: int, rows: list[dict[str, str]]) -> bool:
    return any(
        row["process"] in name and row["port"] in ("any", str(port)) and row["bind"] in ("any", ip) for row in rows
    )


def driver_port(ray) -> int:
    """The driver's core-worker gRPC port: the owner address of an object it put."""
    from ray.core.generated.common_pb2 import Address

    ref = ray.put(0)
    address = Address()
    address.ParseFromString(ray._private.worker.global_worker.core_worker.get_owner_address(ref))
    return address.port


def cluster_listeners(ray) -> dict[tuple[int, str, int], str]:
    """(pid, ip, port) -> process name, for every listening TCP socket of the session's cluster:
    the driver's Ray port, and every process started for this session (its command line names the
    session dir: GCS, raylet, monitor, dashboard, log monitor) with all their descendants
    (workers, dashboard and runtime-env agents). Other clusters on the machine are left out."""
    import psutil  # Ray ships psutil in ray/thirdparty_files, on sys.path once ray is imported

    session = ray._private.worker._global_node.get_session_dir_path()
    driver = psutil.Process()
    procs: dict[int, psutil.Process] = {}
    for p in driver.children(recursive=True):
        try:
            if any(session in arg for arg in p.cmdline()):
                procs[p.pid] = p
                procs.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            continue
    out = {}
    own = driver_port(ray)
    for c in driver.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == own:
            out[(driver.pid, c.laddr.ip, c.laddr.port)] = "driver " + " ".join(driver.cmdline())
    for pid, p in procs.items():
        try:
            name = " ".join(p.cmdline()) or p.name()
            for c in p.net_connections(kind="tcp"):  # tcp = tcp4 + tcp6
                if c.status == psutil.CONN_LISTEN:
                    out[(pid, c.laddr.ip, c.laddr.port)] = name
        except psutil.Error:  # a worker that just exited
            continue
    return out


def expected_ports(ray) -> set[int]:
    """Ports Ray reports for the node; the listeners are complete once all of them are up."""
    node = ray._private.worker._global_node
    (info,) = [n for n in ray.nodes() if n["Alive"]]
    ports = {
        int(node.gcs_address.rsplit(":", 1)[1]),
        info["NodeManagerPort"],
        info["ObjectManagerPort"],
        info["MetricsExportPort"],
        node.runtime_env_agent_port,
        driver_port(ray),
    }
    if node.dashboard_agent_listen_port and node.dashboard_agent_listen_port > 0:
        ports.add(node.dashboard_agent_listen_port)
    return {p for p in ports if p}


@pytest.fixture(scope="module")
def listeners(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0)
    def pid():
        return os.getpid()

    ray.get([pid.remote() for _ in range(2)])  # at least one worker process is up
    want = expected_ports(ray)
    deadline = time.monotonic() + 60
    while True:
        seen = cluster_listeners(ray)
        if want <= {port for _, _, port in seen} or time.monotonic() > deadline:
            break
        time.sleep(1)
    missing = want - {port for _, _, port in seen}
    assert not missing, f"ports Ray reports but nothing of this session listens on: {sorted(missing)}"
    print("\n".join(f"{pid:>8} {ip}:{port:<6} {name[:100]}" for (pid, ip, port), name in sorted(seen.items())))
    return seen


def test_every_listener_of_the_local_cluster_is_on_loopback(listeners):
    rows = allowlist()
    names = set(listeners.values())
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), names
    assert any(n.startswith("driver ") for n in names), "the driver's own gRPC port was not found"
    exposed = [
        f"{name[:80]} on {ip}:{port}"
        for (_, ip, port), name in sorted(listeners.items())
        if not is_loopback(ip) and not allowed(name, ip, port, rows)
    ]
    assert not exposed, (
        f"listening off loopback and not in deploy/README.md's table {ALLOWLIST_HEADING!r}: " + "; ".join(exposed)
    )


def test_the_node_and_gcs_are_registered_on_loopback(ray_cluster):
    node = ray_cluster._private.worker._global_node
    assert node.node_ip_address == rc.LOOPBACK
    assert node.gcs_address.rsplit(":", 1)[0] == rc.LOOPBACK
    assert {n["NodeManagerAddress"] for n in ray_cluster.nodes()} == {rc.LOOPBACK}


def test_single_machine_mode_does_not_outlive_the_start(ray_cluster, monkeypatch):
    """RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 would stop later `ray start --address` calls from this
    process (and its children) from joining a cluster: it only lasts while the head starts."""
    from ray._private import ray_constants

    monkeypatch.delenv(rc.SINGLE_MACHINE_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with rc._single_machine():
        assert os.environ[rc.SINGLE_MACHINE_ENV] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    assert rc.SINGLE_MACHINE_ENV not in os.environ and ray_constants.ENABLE_RAY_CLUSTER == before
    monkeypatch.setenv(rc.SINGLE_MACHINE_ENV, "1")
    with rc._single_machine():
        pass
    assert os.environ[rc.SINGLE_MACHINE_ENV] == "1"


def test_token_auth_is_on(ray_cluster):
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert get_authentication_mode() == AuthenticationMode.TOKEN


def _token_header() -> tuple[str, str]:
    from ray._raylet import AuthenticationTokenLoader

    ((key, value),) = AuthenticationTokenLoader.instance().get_token_for_http_header().items()
    return key, value


def test_gcs_refuses_a_request_without_the_token(ray_cluster):
    import grpc
    from ray.core.generated import gcs_service_pb2

    gcs = ray_cluster._private.worker._global_node.gcs_address
    with grpc.insecure_channel(gcs) as channel:
        call = channel.unary_unary(
            "/ray.rpc.NodeInfoGcsService/GetClusterId",
            request_serializer=gcs_service_pb2.GetClusterIdRequest.SerializeToString,
            response_deserializer=gcs_service_pb2.GetClusterIdReply.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(gcs_service_pb2.GetClusterIdRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
        reply = call(gcs_service_pb2.GetClusterIdRequest(), timeout=10, metadata=[_token_header()])
        assert reply.cluster_id  # the same call with the token works


def test_runtime_env_agent_refuses_a_request_without_the_token(ray_cluster):
    """The agent's HTTP API runs code for the cluster (it builds runtime envs)."""
    url = ray_cluster._private.worker._global_node.runtime_env_agent_address + "/get_runtime_envs_info"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10)
    assert refused.value.code == 401
    key, value = _token_header()
    try:
        status = urllib.request.urlopen(
            urllib.request.Request(url, data=b"", method="POST", headers={key: value}), timeout=10
        ).status
    except urllib.error.HTTPError as exc:  # an empty body may be a bad request,
        status = exc.code  # but it got past the token check
    assert status not in (401, 403), status


@pytest.mark.parametrize("mode", ["disabled", "DISABLED", " disabled "])
@pytest.mark.parametrize(
    "start",
    [lambda: rc.start_local(num_cpus=2, include_dashboard=False), lambda: rc.connect("auto")],
    ids=["start_local", "connect"],
)
def test_auth_mode_disabled_is_refused_in_one_line(monkeypatch, mode, start):
    """Checked before anything starts or connects (and also when a session already runs)."""
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    with pytest.raises(rc.RayAuthError) as refused:
        start()
    message = str(refused.value)
    assert "\n" not in message and "RAY_AUTH_MODE" in message and "RAY_AUTH_MODE=token" in message, message
    assert isinstance(refused.value, ValueError)
    assert os.environ["RAY_AUTH_MODE"] == mode  # the user's setting is not rewritten


def test_auth_mode_token_or_unset_is_accepted(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    rc.check_auth_mode()
    monkeypatch.delenv("RAY_AUTH_MODE")
    rc.check_auth_mode()


def test_readme_allowlist_parses():
    assert isinstance(allowlist(), list)


def test_chip_actors_run_at_normal_priority(ray_cluster):
    """Ray starts workers at nice 15; chip actors are the work and must not starve on a busy machine."""
    import os

    @ray_cluster.remote(num_cpus=0)
    class Probe:
        def niceness(self) -> int:
            return os.nice(0)

    probe = Probe.remote()
    assert ray_cluster.get(probe.niceness.remote()) == 0
    ray_cluster.kill(probe)
