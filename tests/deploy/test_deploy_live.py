"""deploy/ with real processes on loopback: a two-node Ray cluster taking a job, and an
MLflow server on PostgreSQL with basic auth."""

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

BIN = os.path.dirname(sys.executable)


def _free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ray(*args, env, check=True, timeout=180):
    return subprocess.run(
        [os.path.join(BIN, "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


@pytest.fixture
def two_node_cluster(tmp_path):
    """`ray start --head` plus `ray start --address` (the second node advertises optical_chip)."""
    gcs, dash, client, *agent = _free_ports(11)
    temp = tempfile.mkdtemp(prefix="ffm-ray-", dir="/tmp")
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp}"]
    try:
        _ray(
            "start",
            "--head",
            f"--port={gcs}",
            "--num-cpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent[0]}",
            f"--dashboard-agent-grpc-port={agent[1]}",
            f"--metrics-export-port={agent[2]}",
            f"--runtime-env-agent-port={agent[3]}",
            *common,
            env=env,
        )
        _ray(
            "start",
            f"--address=127.0.0.1:{gcs}",
            "--num-cpus=1",
            '--resources={"optical_chip": 1}',
            f"--dashboard-agent-listen-port={agent[4]}",
            f"--dashboard-agent-grpc-port={agent[5]}",
            f"--metrics-export-port={agent[6]}",
            f"--runtime-env-agent-port={agent[7]}",
            *common,
            env=env,
        )
        yield {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dash}", "env": env}
    finally:
        _stop_nodes(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_nodes(temp: str) -> None:
    """Kill only this cluster's processes (``ray stop`` would also kill the test session's own
    Ray cluster, and with it this process): every one of them names our temp dir."""

    def ours():
        pids = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if temp.encode() in f.read():
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
        return pids

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for _ in range(30):
            if not ours():
                return
            time.sleep(0.5)


@pytest.mark.slow
def test_job_submit_places_chips_on_the_optical_chip_node(two_node_cluster, tmp_path):
    c = two_node_cluster
    out = tmp_path / "job"
    entry = [
        os.path.join(BIN, "ffm-train"),
        "debug=smoke",
        "tracking=none",
        "topology=single",
        "cluster=address",
        f"cluster.address={c['gcs']}",
        "chip.num_cpus=0",
        "+chip.resources.optical_chip=1",
        f"output_dir={out}",
    ]
    job = _ray("job", "submit", f"--address={c['dashboard']}", "--", *entry, env=c["env"], check=False, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    chip = summary["chips"]["chip0"]
    assert chip["resources"].get("optical_chip") == 1.0  # it runs on the node that has the resource
    nodes = json.loads(
        _ray("list", "nodes", f"--address={c['dashboard']}", "--format=json", "--detail", env=c["env"]).stdout
    )
    optical = [n["node_id"] for n in nodes if n["resources_total"].get("optical_chip")]
    assert optical == [chip["node_id"]]
    # without the token the job server refuses the client
    anon = _ray(
        "job",
        "list",
        f"--address={c['dashboard']}",
        check=False,
        env={k: v for k, v in c["env"].items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)},
    )
    assert anon.returncode != 0


def _pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(cmd, **kw):
    if os.geteuid() == 0:  # initdb refuses root: run as the postgres system user
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def postgres():
    if not _pg_bin("initdb"):
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine: apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="needs the 'server' extra (psycopg2-binary)")
    base = tempfile.mkdtemp(prefix="ffm-pg-", dir="/tmp")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, (port,) = os.path.join(base, "data"), _free_ports(1)
    r = _as_postgres([_pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres"])
    assert r.returncode == 0, r.stderr
    r = _as_postgres(
        [
            _pg_bin("pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(base, "log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
        ]
    )
    assert r.returncode == 0, r.stderr
    try:
        r = _as_postgres([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"])
        assert r.returncode == 0, r.stderr
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        _as_postgres([_pg_bin("pg_ctl"), "-D", data, "-m", "fast", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def auth_server(postgres, tmp_path):
    pytest.importorskip("flask_wtf", reason="needs the 'server' extra (mlflow[auth])")
    (port,) = _free_ports(1)
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path}/auth.db\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    password = secrets.token_hex(12)
    env = dict(
        os.environ,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_AUTH_CONFIG_PATH=str(ini),
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
    )
    proc = subprocess.Popen(
        [
            os.path.join(BIN, "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            postgres,
            "--artifacts-destination",
            str(tmp_path / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # up (and asking for credentials)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, password
    finally:
        from conftest import stop_server_group

        stop_server_group(proc)


@pytest.mark.slow
def test_authenticated_run_arrives_complete_and_anonymous_writes_are_refused(
    ray_cluster, auth_server, tmp_path, monkeypatch
):
    from conftest import compose
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pipeline import train

    url, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    s = train(compose("debug=smoke", f"output_dir={tmp_path}/out"))
    client = MlflowClient(url)
    run = client.get_run(s["run_id"])
    assert run.info.status == "FINISHED" and len(client.get_metric_history(s["run_id"], "round/loss")) == 6
    assert "phases/final_phases.npz" in {a.path for a in client.list_artifacts(s["run_id"], "phases")}
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(MlflowException, match="401|Unauthorized|credentials"):
        MlflowClient(url).create_experiment("anonymous-write")
