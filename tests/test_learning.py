"""Learning: FFM on a simulated chip learns digits; in-silico masks lose accuracy on the chip."""

import json

import pytest

from pipeline.cli import main


@pytest.mark.slow
def test_small_chip_ffm_learns_digits(tmp_path, capsys):
    """64 x 64, 3 layers, default imperfection level 1 with noise: test accuracy >= 80 %."""
    assert main(["--geometry", "small", "--epochs", "4", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    with capsys.disabled():
        print(f"\n  small chip, FFM: test accuracy {summary['test_accuracy']:.3f}")
    assert summary["test_accuracy"] >= 0.80
    assert (tmp_path / "phases.npz").exists()


@pytest.mark.slow
def test_small_chip_insilico_loses_accuracy_on_the_chip(tmp_path):
    assert main(["--geometry", "small", "--trainer", "insilico", "--epochs", "4", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["twin_test_accuracy"] >= 0.85
    assert s["test_accuracy"] <= s["twin_test_accuracy"] - 0.05


def test_cli_rejects_bad_values_before_work(tmp_path, capsys):
    assert main(["--geometry", "small", "--lr", "-1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr must be a finite number > 0" in err
    assert not (tmp_path / "summary.json").exists()
