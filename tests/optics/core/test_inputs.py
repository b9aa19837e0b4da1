"""Bad input gets a one-line error naming the parameter, before any work starts."""

import gzip

import numpy as np
import pytest

from optics.core.data import encode_amplitude, load_digits_split, load_idx, read_idx
from optics.core.ffm import Objective, forward_only_step
from optics.core.measurement import MeasurementSpec, PassKey
from optics.core.optim import OptimizerSpec
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec


def _one_line(exc_info):
    assert "\n" not in str(exc_info.value)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(wavelength=0), "wavelength"),
        (dict(wavelength=-5e-7), "wavelength"),
        (dict(pitch=0), "pitch"),
        (dict(pitch=float("inf")), "pitch"),
        (dict(distance=-0.3), "distance"),
        (dict(distance=0), "distance"),
        (dict(n=4), "n must be"),
        (dict(n_layers=0), "n_layers"),
        (dict(object_px=300), "object_px"),
        (dict(detector_px=60), "detector_px"),
        (dict(n_classes=2.5), "n_classes"),
    ],
)
def test_geometry_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        Geometry(**kwargs)
    _one_line(e)


def test_padding_that_aliases_is_refused():
    with pytest.raises(ValueError, match="pad=5 px per side aliases") as e:
        DigitalTwin(Geometry(pad=5))
    _one_line(e)


def test_chip_input_errors(be64):
    g = Geometry.small()
    twin = DigitalTwin(g, be64)
    with pytest.raises(ValueError, match=r"phases has shape \(3, 32, 32\), expected \(3, 64, 64\)"):
        twin.program(np.zeros((3, 32, 32)))
    with pytest.raises(ValueError, match="phases contains NaN"):
        twin.program(np.full((3, 64, 64), np.nan))
    with pytest.raises(ValueError, match="amplitudes must lie in"):
        twin.program(np.zeros((3, 64, 64)), np.full((3, 64, 64), 1.5))
    with pytest.raises(ValueError, match="inputs has shape"):
        twin.data_pass(np.zeros((2, 60, 64)))
    with pytest.raises(ValueError, match="inputs contains NaN or inf"):
        twin.data_pass(np.full((2, 64, 64), np.inf))
    with pytest.raises(ValueError, match="samples has 1 ids for a batch of 2"):
        forward_only_step(twin, np.zeros((2, 64, 64)), np.zeros(2, int), Objective(), 0, [0])


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Objective(kind="hinge"), "loss must be one of"),
        (lambda: Objective(temperature=0), "temperature"),
        (lambda: OptimizerSpec(kind="lbfgs"), "optimizer must be one of"),
        (lambda: OptimizerSpec(lr=-1), "lr"),
        (lambda: OptimizerSpec(beta1=1.0), "beta1"),
        (lambda: HardwareSpec(level=-1), "level"),
        (lambda: HardwareSpec(slm_bits=3.5), "slm_bits"),
        (lambda: MeasurementSpec(quantum_efficiency=1.5), "quantum_efficiency"),
        (lambda: MeasurementSpec(photons_per_sample=0), "photons_per_sample"),
        (lambda: PassKey(0, "backward", ()), "pass_name must be one of"),
        (lambda: load_digits_split(val_fraction=0.6, test_fraction=0.5), "val_fraction"),
    ],
)
def test_unknown_options_and_ranges(make, match):
    with pytest.raises(ValueError, match=match) as e:
        make()
    _one_line(e)


def test_encode_errors():
    with pytest.raises(ValueError, match="images contains NaN"):
        encode_amplitude(np.full((1, 8, 8), np.nan), 64, 32)
    with pytest.raises(ValueError, match="object_px=80 does not fit"):
        encode_amplitude(np.zeros((1, 8, 8)), 64, 80)


def test_simulated_chip_rejects_impossible_distance_error():
    with pytest.raises(ValueError, match="distance_error_m"):
        SimulatedChip(Geometry.small(), HardwareSpec(distance_error_m=1.0), seed=0)


def _write_idx(path, array, gz=False, cut=0):
    code = {np.uint8: 0x08}[array.dtype.type]
    raw = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw += array.tobytes()
    raw = raw[: len(raw) - cut]
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_reader_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (50, 28, 28), dtype=np.uint8)
    labs = (np.arange(50) % 10).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labs)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:20])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labs[:20], gz=True)
    split = load_idx(str(tmp_path), val_fraction=0.2)
    assert len(split.train) == 40 and len(split.val) == 10 and len(split.test) == 20
    np.testing.assert_array_equal(read_idx(str(tmp_path / "train-images-idx3-ubyte.gz")), imgs)
    assert split.test.ids.min() == 50
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:20], cut=7)
    with pytest.raises(ValueError, match="truncated or padded") as e:
        load_idx(str(tmp_path))
    _one_line(e)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:19])
    with pytest.raises(ValueError, match="do not match"):
        load_idx(str(tmp_path))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01")[:-5])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(ValueError, match="not found"):
        load_idx(str(tmp_path / "nowhere"))
