"""A finished run as a researcher sees it: a real `mlflow ui` on 127.0.0.1, read in a real headless
Chromium on a fresh profile, through the link the run prints (the model-training view).

Needs Debian's ``chromium`` and ``chromium-driver`` (`.ci/run` installs them) and selenium (dev group);
skipped with the reason where they are absent. Helpers: docs/ui/ui_browser.py (shared with
docs/ui/capture.py, which takes the screenshots in docs/ui/).
"""

import pathlib
import sys

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "ui"))

import ui_browser  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(ui_browser.missing() is not None, reason=f"browser test: {ui_browser.missing()}"),
]

WAIT_S = 120  # generous: a loaded 2-core machine renders MLflow's React app slowly, a quiet one in ~2 s
FIGURE = "figures/learning_curves.png"


@pytest.fixture(scope="module")
def finished_run(ray_cluster, tmp_path_factory):
    """A finished `debug=smoke` run with figures in a SQLite store of its own (a few seconds of
    training on the session's Ray cluster) and a real `mlflow ui` on that store, started before the
    training so that its 10-40 s of start-up overlap it; yields (UI url, experiment id, run)."""
    from pipeline import train
    from pipeline.config import load_config
    from pipeline.run.build import run_label

    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).search_experiments()  # create the store's tables here, not racing the server
    with ui_browser.mlflow_ui(uri, str(folder / "ui.log")) as server, pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # the store's default artifact root (./mlruns) lands here, not in the checkout
        cfg = compose("debug=smoke", "tracking.log_images=true", f"tracking.uri='{uri}'", f"output_dir={folder}/out")
        summary = train(cfg)
        run = MlflowClient(uri).get_run(summary["run_id"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == run_label(load_config(cfg))  # "ffm diffractive/small digits ...", not random
        yield server.ready(), run.info.experiment_id, run


@pytest.fixture
def browser():
    with ui_browser.chrome() as driver:
        yield driver


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:3000]
        pytest.fail(f"{what} not shown within {WAIT_S} s; the page reads:\n{body}")


def _nav_text(driver) -> str:
    return " | ".join(n.text for n in driver.find_elements("tag name", "nav"))


def test_run_page_shows_name_accuracy_per_chip_and_geometry_in_model_training_view(finished_run, browser):
    from pipeline.tracking.server import run_url

    ui, experiment_id, run = finished_run
    browser.get(run_url(ui, experiment_id, run.info.run_id))  # the link the run prints and logs
    wanted = ["final_test_accuracy/chip0", "final_test_accuracy/chip1", "physics.pitch_m", "physics.wavelength_m"]
    rows = _wait(
        browser,
        lambda d: (r := ui_browser.table_rows(d)) and all(k in r for k in wanted) and r,
        "the run's metrics and parameters tables",
    )
    # the run's name is the page's title
    assert run.info.run_name in [h.text.strip() for h in browser.find_elements("tag name", "h2")]
    # the final test accuracy of each chip, as logged (the UI prints the full float)
    for chip in ("chip0", "chip1"):
        key = f"final_test_accuracy/{chip}"
        assert float(rows[key]) == pytest.approx(run.data.metrics[key], abs=1e-12), (key, rows[key])
    # the resolved geometry of the small chip, with units in the names
    assert float(rows["physics.pitch_m"]) == pytest.approx(3.6e-05)
    assert float(rows["physics.wavelength_m"]) == pytest.approx(5.32e-07)
    assert rows["physics.grid_px"] == "64"
    # the model-training view: its sidebar (Runs, Models, Model registry), not the GenAI one's
    nav = _nav_text(browser)
    assert "Model registry" in nav and "Observability" not in nav, nav


def test_a_figure_renders_in_the_artifacts_view(finished_run, browser):
    ui, experiment_id, run = finished_run
    browser.get(ui_browser.run_page(ui, experiment_id, run.info.run_id, f"artifacts/{FIGURE}"))
    img = _wait(browser, lambda d: ui_browser.rendered_image(d, FIGURE), f"the figure {FIGURE}")
    width, height = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
    assert width > 300 and height > 200  # the PNG itself, decoded by the browser (not an icon)
    assert img.is_displayed() and img.size["width"] > 100
    tree = browser.find_element("tag name", "body").text  # the artifact tree lists every figure
    for name in ("phase_masks_shared.png", "confusion_chip0.png", "detector_examples_chip1.png"):
        assert name in tree, tree[:2000]
    nav = _nav_text(browser)
    assert "Model registry" in nav and "Observability" not in nav, nav
