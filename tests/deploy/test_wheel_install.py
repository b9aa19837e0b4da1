"""A non-editable install works: the built wheel (conf/ inside as pipeline/conf/), installed into a
fresh venv over the versions pinned in uv.lock (the ``pipeline`` extra), runs ``ffm-train`` from
outside the checkout; over the ``rig`` extra's locked set alone it runs ``ffm-rig`` without Ray.

This is what the Docker images in deploy/docker/ do (tests/test_deploy_manifests.py checks that
statically). The dependencies come from ``uv export --format pylock.toml``: it names each locked
wheel by URL and hash, so uv installs them from its cache without asking the index (offline when
the cache holds them, online otherwise) and hardlinks them into the venv.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _uv():
    local = REPO / ".tools" / "bin" / "uv"
    if local.exists():
        return str(local)
    if shutil.which("uv"):
        return shutil.which("uv")
    pytest.skip("uv not found: neither .tools/bin/uv (make setup bootstraps it) nor uv on PATH")


def _clean_env():
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX"):
        env.pop(var, None)
    return env


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), **kw)
    assert out.returncode == 0, (
        f"{' '.join(map(str, cmd))} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out


def _uv_offline_first(cmd, **kw):
    """uv from its cache alone if it can; with the index when the cache lacks something."""
    out = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, env=_clean_env(), **kw)
    return out if out.returncode == 0 else _run(cmd, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel): the sdist, then the wheel uv builds from it."""
    dist = tmp_path_factory.mktemp("dist")
    _uv_offline_first([_uv(), "build", "--out-dir", str(dist), str(REPO)], cwd=REPO, timeout=300)
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    return sdist, wheel


def _venv_over_the_lock(uv, tmp_path, wheel, *extras):
    """A fresh venv: the locked runtime dependencies (with ``extras``), then the wheel, non-editable
    and --no-deps; returns its python."""
    lock = tmp_path / "pylock.toml"
    flags = [f for extra in extras for f in ("--extra", extra)]
    _run(
        [uv, "export", "--frozen", "--no-emit-project", "--no-dev", *flags, "--format", "pylock.toml", "-o", str(lock)],
        cwd=REPO,
        timeout=120,
    )
    venv = tmp_path / "venv"
    _run([uv, "venv", "--python", sys.executable, str(venv)], cwd=tmp_path, timeout=120)
    py = venv / "bin" / "python"
    _uv_offline_first(
        [uv, "pip", "install", "--python", str(py), "--link-mode=hardlink", "-r", str(lock)], cwd=tmp_path, timeout=600
    )
    _run([uv, "pip", "install", "--python", str(py), "--no-deps", str(wheel)], cwd=tmp_path, timeout=120)
    _run([uv, "pip", "check", "--python", str(py)], cwd=tmp_path, timeout=120)  # the wheel's own requirements hold
    return py


@pytest.mark.slow
def test_wheel_installs_non_editable_and_ffm_train_runs(tmp_path, built):
    uv = _uv()
    t0 = time.perf_counter()

    # sdist, then the wheel built from that sdist: both must carry conf/
    sdist, wheel = built
    conf = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert "config.yaml" in conf and "debug/smoke.yaml" in conf
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {f"conf/{c}" for c in conf} <= in_sdist, "the sdist lacks conf/"
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
    assert {f"pipeline/conf/{c}" for c in conf} <= in_wheel, "the wheel lacks pipeline/conf/"
    assert not [n for n in in_wheel if n.startswith("conf/")], "conf/ must ship inside the package"

    # a fresh venv: the locked runtime dependencies of ffm-train (the pipeline extra), then the wheel
    py = _venv_over_the_lock(uv, tmp_path, wheel, "pipeline")
    venv = py.parent.parent
    t_install = time.perf_counter() - t0

    # the venv imports the installed copy, not this checkout
    probe = (
        "import json, sysconfig, pipeline, optics, pipeline.cli as cli; print(json.dumps({'pipeline': "
        "pipeline.__file__, 'optics': optics.__file__, 'conf': cli.CONFIG_DIR, "
        "'purelib': sysconfig.get_paths()['purelib']}))"
    )
    where = json.loads(_run([str(py), "-c", probe], cwd=tmp_path, timeout=120).stdout)
    site = pathlib.Path(where["purelib"]).resolve()
    for key in ("pipeline", "optics", "conf"):
        path = pathlib.Path(where[key]).resolve()
        assert path.is_relative_to(site) and not path.is_relative_to(REPO), (key, path)
    assert pathlib.Path(where["conf"]).resolve() == site / "pipeline" / "conf"
    assert not [p for p in site.glob("*.pth") if str(REPO) in p.read_text()], "an editable .pth into the checkout"
    (direct_url,) = site.glob("ffm_optics-*.dist-info/direct_url.json")
    assert not json.loads(direct_url.read_text()).get("dir_info", {}).get("editable")
    ffm_train = venv / "bin" / "ffm-train"
    assert str(py) in "\n".join(ffm_train.read_text().splitlines()[:3]), "ffm-train runs another python"

    # the console script, from a folder outside the checkout
    out_dir = tmp_path / "out"
    t1 = time.perf_counter()
    run = subprocess.run(
        [str(ffm_train), "debug=smoke", "tracking=none", "cluster.num_cpus=2", f"output_dir={out_dir}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=600,
    )
    assert run.returncode == 0, f"ffm-train -> {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert (out_dir / "summary.json").exists()
    json.loads((out_dir / "summary.json").read_text())
    print(f"\nbuild + install {t_install:.1f} s, ffm-train {time.perf_counter() - t1:.1f} s")


@pytest.mark.slow
def test_rig_extra_alone_runs_ffm_rig_without_ray(tmp_path, built):
    """A lab PC's install: the wheel over the ``rig`` extra's locked set; no Ray, MLflow or Hydra."""
    uv = _uv()
    py = _venv_over_the_lock(uv, tmp_path, built[1], "rig")
    ffm_rig = py.parent / "ffm-rig"
    out = _run([str(ffm_rig), "serve", "--help"], cwd=tmp_path, timeout=120)
    assert "--config" in out.stdout and "--host" in out.stdout and "--allow" in out.stdout
    probe = "import importlib.util as u; print([m for m in ('ray', 'mlflow', 'hydra') if u.find_spec(m)])"
    assert _run([str(py), "-c", probe], cwd=tmp_path, timeout=120).stdout.strip() == "[]"
    # the one-line error of bad input, from the installed copy
    bad = tmp_path / "rig.yaml"
    bad.write_text("field_amplitude: {driver: no_such_slm}\nfield_phase: {driver: simulated_slm}\ncamera: flir\n")
    run = subprocess.run(
        [str(ffm_rig), "serve", "--config", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=120,
    )
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "no_such_slm" in run.stderr and "meadowlark" in run.stderr
    # ffm-train is installed with the base package but needs the pipeline extra: it says so in one line
    train = subprocess.run(
        [str(py.parent / "ffm-train")], capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=120
    )
    assert train.returncode == 2 and len(train.stderr.strip().splitlines()) == 1, train.stderr
    assert 'pip install "ffm-optics[pipeline]"' in train.stderr
