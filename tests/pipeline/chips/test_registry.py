"""The chip registry: one adapter per system, asked instead of comparing kinds."""

import pickle

import numpy as np
import pytest

from optics.core.measurement import MeasurementSpec
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec
from optics.mesh.layout import MeshErrors, MeshGeometry
from pipeline import chips
from pipeline.chips import ChipSpec, PhaseLayout
from pipeline.reports.figures import phase_masks
from pipeline.run.coordinator import RoundResult, Target


def test_every_adapter_meets_the_protocol():
    for kind, adapter in chips.CHIPS.items():
        assert adapter.kind == kind and adapter.topologies
        for name in ("design", "max_stages", "prepare_split", "make_chips", "encode", "detector_regions"):
            assert callable(getattr(adapter, name))


def test_unknown_kind_is_one_line_naming_the_known_kinds():
    with pytest.raises(ValueError, match="diffractive, mzi") as e:
        chips.system("laser")
    assert "\n" not in str(e.value)


def test_a_spec_without_a_kind_finds_its_system_by_geometry():
    mesh = ChipSpec(0, 1, MeshGeometry(5, 3), MeshErrors(), MeasurementSpec())
    diffractive = ChipSpec(0, 1, Geometry.small(n_classes=3), HardwareSpec(), MeasurementSpec())
    assert chips.system_of(mesh).kind == "mzi" and chips.system_of(diffractive).kind == "diffractive"


def test_layouts_and_figures():
    assert chips.system("mzi").layout == PhaseLayout.COLUMNS
    assert chips.system("diffractive").layout == PhaseLayout.PLANES
    assert len(phase_masks(np.zeros((2, 8, 8)), "t", PhaseLayout.PLANES).axes) == 3  # two panels and a colorbar
    assert len(phase_masks(np.zeros((4, 5)), "t", PhaseLayout.COLUMNS).axes) == 2


def test_round_result_pickles_and_target_equals_its_string():
    r = RoundResult({"phase": np.ones(3)}, 0.5, 4, 2, 0.1)
    back = pickle.loads(pickle.dumps(r))
    assert back.n == 4 and np.array_equal(back.grads["phase"], r.grads["phase"]) and back.fidelity_cosine is None
    assert Target.CHIP == "chip" and Target("twin") is Target.TWIN
