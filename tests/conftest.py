import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from optics.core.backend import get_backend, gpu_available


@pytest.fixture(scope="session")
def be128():
    return get_backend("numpy", "complex128")


@pytest.fixture(scope="session")
def be64():
    return get_backend("numpy", "complex64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device / CuPy: GPU tests skipped")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


CONF_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")


def compose(*overrides):
    """The Hydra config ffm-train would run with these overrides (compose API, in-process)."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return _compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole test session (2 CPUs, no dashboard), started as
    the app starts it: on loopback, token auth on (pipeline/ray_cluster.py)."""
    import ray

    from pipeline.run.ray_cluster import start_local

    start_local(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server_at(folder, port: int | None = None):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts under ``folder``);
    yields ``(url, process)``. The same ``folder`` and ``port`` start it again after a stop."""
    port = port or free_port()
    log = open(os.path.join(folder, "server.log"), "a")
    proc = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/server.db",
            "--artifacts-destination",
            os.path.join(folder, "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a loaded 2-core machine can take a while
        while True:
            try:
                if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not come up: " + open(log.name).read()[-3000:])
                time.sleep(0.5)
        yield url, proc
    finally:
        stop_server(proc)
        log.close()


def stop_server(proc) -> None:
    """Stop a server started by :func:`mlflow_server_at` (it and its job-runner children)."""
    if proc.poll() is None:
        stop_server_group(proc)


def stop_server_group(proc, grace_s: float = 60.0) -> None:
    """SIGTERM a server's process group and wait; on a loaded machine gunicorn's workers can take
    longer than a quiet one suggests, so after ``grace_s`` the group is SIGKILLed and reaped."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 for one test; yields its URL."""
    with mlflow_server_at(str(tmp_path)) as (url, _):
        yield url


def read_line(sock) -> bytes:
    """Bytes from ``sock`` up to a newline (one message of slmsuite's protocol) or the peer's close."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
