"""deploy/: every manifest parses and carries what its tool requires; no credentials committed."""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy"


def _load(name):
    return yaml.safe_load((DEPLOY / name).read_text())


def test_raycluster_has_head_cpu_gpu_and_physical_chip_groups():
    rc = _load("kuberay/raycluster.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    spec = rc["spec"]
    assert spec["rayVersion"] == "2.60.0" and spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"          # dashboard not public
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
    assert all("RAY_AUTH_MODE=token" in c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
               if "ray start" in c)
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
    for svc in services.values():   # every credential comes from the environment
        for key, value in (svc.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|ACCESS_KEY", key):
                assert str(value).startswith("${"), (key, value)
    assert "uvicorn[standard]" in (DEPLOY / "mlflow" / "Dockerfile").read_text()
    assert ".env" in (DEPLOY.parent / ".gitignore").read_text()


@pytest.mark.parametrize("name,base", [("Dockerfile.cpu", "rayproject/ray:2.60.0-py311-cpu"),
                                       ("Dockerfile.cuda", "rayproject/ray:2.60.0-py311-cu")])
def test_dockerfiles_pin_the_ray_image_and_do_not_reinstall_ray(name, base):
    text = (DEPLOY / "docker" / name).read_text()
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines()) if line.startswith("FROM")][0]] \
        .split()[1].startswith(base)
    assert not re.search(r"pip install[^\n]*\bray\b", text)
    reqs = (DEPLOY / "docker" / "requirements.txt").read_text()
    assert not re.search(r"^ray(==|\[)", reqs, re.M) and re.search(r"^mlflow==3\.17\.2$", reqs, re.M)
    if name.endswith("cuda"):
        assert "cupy-cuda12x" in text


def test_requirements_match_the_lock():
    uv = DEPLOY.parent / ".tools" / "bin" / "uv"
    if not uv.exists() and not shutil.which("uv"):
        pytest.skip("uv not bootstrapped (make setup does it)")
    out = subprocess.run(["uv" if not uv.exists() else str(uv), "export", "--frozen", "--no-hashes",
                          "--no-emit-project", "--no-dev", "--no-header", "--format", "requirements-txt"],
                         capture_output=True, text=True, check=True, cwd=DEPLOY.parent).stdout
    expected = [line for line in out.splitlines() if not re.match(r"^ray(==|\[)", line) and
                not line.startswith("    #")]
    assert (DEPLOY / "docker" / "requirements.txt").read_text().splitlines() == expected, \
        "run deploy/docker/export-requirements.sh"
