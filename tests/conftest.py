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
