"""What a researcher sees of a default run: a quiet console, and every file in one place."""

import os
import re
import subprocess
import sys

import pytest

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")

# lines that need no action from the user, which a run must not print (Ray's and MLflow's)
NOISE = re.compile(
    r"core_worker|restart will fail|token auth|RAY_AUTH|Warning|WARNING|DeprecationWarning|"
    r"Downloading artifacts|Creating initial MLflow database|INFO mlflow|Traceback|\bE \d{4}"
)


@pytest.mark.slow
def test_a_default_run_is_quiet_and_writes_only_under_outputs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_AUTH_MODE")}
    out = subprocess.run([BIN, "debug=smoke"], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = (out.stdout + out.stderr).replace("\r", "\n")
    noise = [line for line in printed.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)
    assert "test accuracy on chip0" in out.stdout and "?workflowType=machine_learning" in out.stdout
    assert sorted(os.listdir(tmp_path)) == ["outputs"]  # one place for everything generated
    generated = set(os.listdir(tmp_path / "outputs"))
    assert {"mlflow.db", "mlruns", "runs"} <= generated, generated
    (day,) = os.listdir(tmp_path / "outputs" / "runs")
    (run,) = os.listdir(tmp_path / "outputs" / "runs" / day)
    assert (tmp_path / "outputs" / "runs" / day / run / "summary.json").exists()
