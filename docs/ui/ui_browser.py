"""A real `mlflow ui` and a headless Chromium on a fresh profile, for tests/pipeline/test_ui_browser.py
and docs/ui/capture.py.

Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`; `.ci/run` installs
them): Playwright cannot download its browser where the network is closed. Selenium is given both
paths, so it never tries to download a driver either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Chromium's own network traffic (component updates, sync, field trials) floods refused connections
# where the network is closed, and slows start-up; none of it is needed to render MLflow's UI.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# MLflow 3 opens experiments in its GenAI view unless the route carries this
MODEL_TRAINING = "workflowType=machine_learning"


def chromium_paths() -> tuple[str | None, str | None]:
    """The Chromium binary and its driver, or None where absent (``$CHROMIUM``, ``$CHROMEDRIVER`` win)."""
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return browser, driver


def missing() -> str | None:
    """Why a browser cannot be driven here (one line naming the fix), or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the dev dependency group: make setup)"
    browser, driver = chromium_paths()
    if not browser or not driver:
        absent = [name for name, path in (("chromium", browser), ("chromium-driver", driver)) if not path]
        return f"{' and '.join(absent)} not installed (apt-get install chromium chromium-driver; .ci/run does)"
    return None


@contextlib.contextmanager
def chrome(width: int = 1600, height: int = 1100):
    """A headless Chromium on a fresh, throw-away profile (so MLflow's per-browser view setting and
    dismissed pop-ups start from their defaults); yields the Selenium driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    profile = tempfile.mkdtemp(prefix="ffm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowUi:
    """``mlflow ui --backend-store-uri <store_uri>`` on a free 127.0.0.1 port, as the README and a
    finished run tell a user to start it. It starts at once; :meth:`ready` waits until it answers
    (so a caller can train while the server imports, which takes 10-40 s on a loaded 2-core machine)."""

    def __init__(self, store_uri: str, log_path: str):
        self.port, self.log_path = free_port(), log_path
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        cmd = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "ui", "--backend-store-uri", store_uri]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)

    def ready(self, timeout_s: float = 240.0) -> str:
        """Wait until ``/health`` answers; returns the URL."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if urllib.request.urlopen(self.url + "/health", timeout=2).status == 200:
                    return self.url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    with open(self.log_path) as f:
                        raise RuntimeError("mlflow ui did not come up: " + f.read()[-3000:]) from None
                time.sleep(0.5)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the server and its children (its process group)."""
        _stop(self.proc, grace_s)


@contextlib.contextmanager
def mlflow_ui(store_uri: str, log_path: str):
    """A started :class:`MlflowUi` (not yet waited for), stopped on exit."""
    server = MlflowUi(store_uri, log_path)
    try:
        yield server
    finally:
        server.stop()


def _stop(proc, grace_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def run_page(server: str, experiment_id: str, run_id: str, tab: str = "") -> str:
    """A run's page (``tab``: '', 'model-metrics', 'artifacts/<path>') in the model-training view."""
    path = f"/{tab}" if tab else ""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}{path}?{MODEL_TRAINING}"


def table_rows(driver) -> dict[str, str]:
    """The run page's key/value tables (metrics, parameters, tags) as ``{first cell: second cell}``."""
    script = """
        const out = {};
        for (const row of document.querySelectorAll('[role="row"]')) {
            const cells = row.querySelectorAll('[role="cell"]');
            if (cells.length >= 2) out[cells[0].innerText.trim()] = cells[1].innerText.trim();
        }
        return out;"""
    return driver.execute_script(script)


def rendered_image(driver, alt: str):
    """The <img> showing artifact ``alt`` once the browser has decoded it (naturalWidth > 0), else False."""
    for img in driver.find_elements("css selector", f'img[alt="{alt}"]'):
        if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img):
            return img
    return False


def close_assistant(driver) -> None:
    """Close MLflow's assistant side panel (open by default on a fresh profile) for a wider page."""
    driver.execute_script("window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');")
