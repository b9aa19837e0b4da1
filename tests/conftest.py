import numpy as np
import pytest

from optics.backend import get_backend, gpu_available


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

    from pipeline.ray_cluster import start_local

    start_local(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"
