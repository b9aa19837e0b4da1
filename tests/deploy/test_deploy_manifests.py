"""deploy/: every manifest parses and carries what its tool requires; no credentials committed."""

import pathlib
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"


def _load(name):
    return yaml.safe_load((DEPLOY / name).read_text())


def test_raycluster_has_head_cpu_gpu_and_physical_chip_groups():
    rc = _load("kuberay/raycluster.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    spec = rc["spec"]
    assert spec["rayVersion"] == "2.60.0" and spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"  # dashboard not public
    assert spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-chips", "gpu-chips", "physical-chips"}
    for g in groups.values():
        assert {"replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(g)
        assert g["template"]["spec"]["containers"][0]["image"]
    gpu = groups["gpu-chips"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1" and gpu["image"].endswith(":cuda")
    phys = groups["physical-chips"]
    assert phys["template"]["spec"]["nodeSelector"] == {"ffm-optics/optical-chip": "true"}
    assert '\\"optical_chip\\": 1' in phys["rayStartParams"]["resources"]


def test_rayjob_runs_ffm_train_with_token_auth():
    job = _load("kuberay/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["entrypoint"].startswith("ffm-train experiment=")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in head["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    exp = job["spec"]["entrypoint"].split("experiment=")[1].split()[0]
    assert (DEPLOY.parent / "conf" / "experiment" / f"{exp}.yaml").exists()


@pytest.mark.parametrize("name", ["ray-cluster.yaml", "ray-cluster.aws.yaml"])
def test_ray_up_configs(name):
    cfg = _load(name)
    assert {"cluster_name", "provider", "head_start_ray_commands", "worker_start_ray_commands"} <= set(cfg)
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    assert all(
        "RAY_AUTH_MODE=token" in c
        for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
        if "ray start" in c
    )
    if cfg["provider"]["type"] == "local":
        assert cfg["provider"]["head_ip"] and cfg["provider"]["worker_ips"]
        assert any("optical_chip" in c for c in cfg["worker_start_ray_commands"])
    else:
        assert cfg["head_node_type"] in cfg["available_node_types"]


def test_mlflow_compose_has_postgres_minio_basic_auth_and_no_secrets():
    compose = _load("mlflow/docker-compose.yaml")
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    cmd = services["mlflow"]["command"]
    assert "--app-name basic-auth" in cmd and "postgresql+psycopg2://" in cmd and "s3://" in cmd
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"].startswith("http://minio")
    for svc in services.values():  # every credential comes from the environment
        for key, value in (svc.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|ACCESS_KEY", key):
                assert str(value).startswith("${"), (key, value)
    assert "uvicorn[standard]" in (DEPLOY / "mlflow" / "Dockerfile").read_text()
    assert ".env" in (DEPLOY.parent / ".gitignore").read_text()


@pytest.mark.parametrize(
    "name,base",
    [("Dockerfile.cpu", "rayproject/ray:2.60.0-py311-cpu"), ("Dockerfile.cuda", "rayproject/ray:2.60.0-py311-cu")],
)
def test_dockerfiles_pin_the_ray_image_and_do_not_reinstall_ray(name, base):
    text = (DEPLOY / "docker" / name).read_text()
    assert (
        text.splitlines()[[i for i, line in enumerate(text.splitlines()) if line.startswith("FROM")][0]]
        .split()[1]
        .startswith(base)
    )
    assert not re.search(r"pip install[^\n]*\bray\b", text)
    reqs = (DEPLOY / "docker" / "requirements.txt").read_text()
    assert not re.search(r"^ray(==|\[)", reqs, re.M) and re.search(r"^mlflow==3\.17\.2$", reqs, re.M)
    # the images are coordinator and chip hosts: the pipeline extra, with slmsuite for chips on a rig
    assert re.search(r"^hydra-core==1\.3\.8$", reqs, re.M) and re.search(r"^slmsuite==0\.5\.0$", reqs, re.M)
    if name.endswith("cuda"):
        assert "requirements-cuda.txt" in text
        assert re.search(r"^cupy-cuda12x==", (DEPLOY / "docker" / "requirements-cuda.txt").read_text(), re.M)


@pytest.mark.parametrize(
    "name,extras",
    [
        ("requirements.txt", ["--extra", "pipeline"]),
        ("requirements-cuda.txt", ["--extra", "pipeline", "--extra", "gpu"]),
    ],
)
def test_requirements_match_the_lock(name, extras):
    uv = DEPLOY.parent / ".tools" / "bin" / "uv"
    if not uv.exists() and not shutil.which("uv"):
        pytest.skip("uv not bootstrapped (make setup does it)")
    out = subprocess.run(
        [
            "uv" if not uv.exists() else str(uv),
            "export",
            "--frozen",
            "--no-hashes",
            "--no-emit-project",
            "--no-dev",
            "--no-header",
            "--format",
            "requirements-txt",
            *extras,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=DEPLOY.parent,
    ).stdout
    expected = [
        line for line in out.splitlines() if not re.match(r"^ray(==|\[)", line) and not line.startswith("    #")
    ]
    assert (DEPLOY / "docker" / name).read_text().splitlines() == expected, "run deploy/docker/export-requirements.sh"


def _dockerfile_stages(path):
    """[(from_line_args, [(INSTRUCTION, args)])] per build stage; continuations joined, comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    stages = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append((args.split(), []))
        else:
            assert stages, f"{path.name}: {instr} before FROM"
            stages[-1][1].append((instr.upper(), args.strip()))
    return stages


def _pip_installs(run_args):
    """The argument lists of every `pip install` in one RUN's shell command."""
    for cmd in re.split(r"&&|\|\||;", run_args):
        words = shlex.split(cmd)
        for i in range(len(words) - 1):
            if words[i] in ("pip", "pip3") or words[i].endswith("/pip"):
                if words[i + 1] == "install":
                    yield words[i + 2 :]


def _copies(instrs):
    """(flags, sources, dest) of each COPY/ADD."""
    for instr, args in instrs:
        if instr in ("COPY", "ADD"):
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            yield instr, flags, paths[:-1], paths[-1]


@pytest.mark.parametrize(
    "name,reqs", [("Dockerfile.cpu", "requirements.txt"), ("Dockerfile.cuda", "requirements-cuda.txt")]
)
def test_dockerfiles_install_the_built_wheel_over_the_locked_requirements(name, reqs):
    """As tests/test_wheel_install.py does: uv builds the wheel (conf/ inside), the image installs
    the locked requirements and then that wheel, non-editable, --no-deps; no source tree in the image."""
    root = DEPLOY.parent
    stages = _dockerfile_stages(DEPLOY / "docker" / name)
    assert len(stages) >= 2, "a wheel-building stage, then the image"
    (_, final), builders = stages[-1], stages[:-1]
    every_run = [args for _, instrs in stages for instr, args in instrs if instr == "RUN"]
    for run in every_run:
        for pip_args in _pip_installs(run):
            assert not {"-e", "--editable"} & set(pip_args), f"{name}: editable install: {run}"
            assert not {".", "./"} & set(pip_args), f"{name}: `pip install .` builds and resolves afresh: {run}"

    # the builder: uv at the Makefile's version builds the wheel from the files the wheel needs
    uv_version = re.search(r"^UV_VERSION \?= (\S+)$", (root / "Makefile").read_text(), re.M).group(1)
    stage_names = {args[2]: instrs for args, instrs in builders if len(args) == 3 and args[1].upper() == "AS"}
    built = {
        n for n, instrs in stage_names.items() if any(re.search(r"\buv build\b", a) for i, a in instrs if i == "RUN")
    }
    assert len(built) == 1, f"{name}: one named stage runs `uv build`"
    builder = stage_names[next(iter(built))]
    assert any(f"uv=={uv_version}" in a for i, a in builder if i == "RUN"), f"{name}: uv pinned to {uv_version}"
    copied = {pathlib.PurePosixPath(s).as_posix().rstrip("/") for _, _, srcs, _ in _copies(builder) for s in srcs}
    assert {"pyproject.toml", "README.md", "uv.lock", "optics", "pipeline", "conf"} <= copied, copied

    # the image: no project source, the locked requirements file, then the wheel from the builder
    final_copies = list(_copies(final))
    for instr, flags, srcs, _ in final_copies:
        assert instr == "COPY", f"{name}: ADD in the image"
        if not any(f.startswith("--from=") for f in flags):
            assert srcs == [f"deploy/docker/{reqs}"], f"{name}: the image copies only the requirements, got {srcs}"
    req_dest = next(dest for _, flags, srcs, dest in final_copies if srcs == [f"deploy/docker/{reqs}"])
    wheel_copy = [(srcs, dest) for _, flags, srcs, dest in final_copies if f"--from={next(iter(built))}" in flags]
    assert len(wheel_copy) == 1 and all(s.endswith(".whl") for s in wheel_copy[0][0]), wheel_copy
    wheel_dest = wheel_copy[0][1]
    installs = [args for i, a in final if i == "RUN" for args in _pip_installs(a)]
    assert installs, f"{name}: nothing installed"
    for args in installs:  # nothing resolved afresh: the locked set is complete (Ray from the base)
        assert "--no-deps" in args, f"{name}: pip install without --no-deps: {args}"
        targets = [a for a in args if not a.startswith("-")]
        assert not [t for t in targets if not t.endswith(".whl") and t != req_dest], (
            f"{name}: installs something besides the locked requirements and the wheel: {targets}"
        )
    req_run = next(i for i, args in enumerate(installs) if "-r" in args and args[args.index("-r") + 1] == req_dest)
    whl_run = next(
        i for i, args in enumerate(installs) if any(a.endswith(".whl") and a.startswith(wheel_dest) for a in args)
    )
    assert req_run <= whl_run, f"{name}: the wheel goes in over the locked requirements"
    assert not any(i in ("ENTRYPOINT", "CMD") for i, _ in final), "KubeRay sets the container command"


def test_kuberay_calls_the_entry_point_the_wheel_installs():
    scripts = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ffm-train"] == "pipeline.entry:train"
    assert scripts["ffm-report"] == "pipeline.entry:report"
    module, func = scripts["ffm-train"].split(":")
    source = (DEPLOY.parent / (module.replace(".", "/") + ".py")).read_text()
    assert re.search(rf"^def {func}\(", source, re.M)
    job = _load("kuberay/rayjob.yaml")
    assert shlex.split(job["spec"]["entrypoint"])[0] == "ffm-train"
    images = set()
    for doc in (job["spec"]["rayClusterSpec"], _load("kuberay/raycluster.yaml")["spec"]):
        for group in [doc["headGroupSpec"], *doc["workerGroupSpecs"]]:
            images |= {c["image"] for c in group["template"]["spec"]["containers"]}
    for image in images:  # every image KubeRay runs is one these Dockerfiles build
        tag = image.rsplit(":", 1)[1]
        assert (DEPLOY / "docker" / f"Dockerfile.{tag}").exists(), image


def test_rig_extra_serves_a_rig_without_ray_mlflow_or_hydra():
    """`pip install "ffm-optics[rig]"` (a lab PC) gets ffm-rig serve's needs and none of the pipeline's."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ffm-rig"] == "optics.rig.serve:main"
    assert re.search(r"^def main\(", (DEPLOY.parent / "optics" / "rig" / "serve.py").read_text(), re.M)
    extras = project["optional-dependencies"]
    heavy = re.compile(r"^(ray|mlflow|hydra-core|omegaconf)\b")
    for requirement in project["dependencies"] + extras["rig"]:
        assert not heavy.match(requirement), f"the rig install would pull {requirement}"
    assert {"slmsuite==0.5.0", "pyyaml>=6"} <= set(extras["rig"])
    assert {r.split("==")[0].split("[")[0] for r in extras["pipeline"]} >= {"ray", "mlflow", "hydra-core", "slmsuite"}
    uv = DEPLOY.parent / ".tools" / "bin" / "uv"
    if not uv.exists() and not shutil.which("uv"):
        pytest.skip("uv not bootstrapped (make setup does it)")
    locked = subprocess.run(
        [str(uv) if uv.exists() else "uv", "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-dev"]
        + ["--no-header", "--format", "requirements-txt", "--extra", "rig"],
        capture_output=True,
        text=True,
        check=True,
        cwd=DEPLOY.parent,
    ).stdout
    names = {re.split(r"[=\[ ;]", line)[0] for line in locked.splitlines() if line and not line.startswith(" ")}
    assert {"slmsuite", "pyyaml", "numpy", "scipy", "pyfftw"} <= names, names
    assert not names & {"ray", "mlflow", "mlflow-skinny", "hydra-core", "omegaconf"}, names
