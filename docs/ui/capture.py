"""Screenshots of ffm-optics in MLflow's UI (docs/ui/*.png), as a new user sees it: a fresh headless
Chromium profile on a real `mlflow ui`, in the model-training view.

    .venv/bin/python docs/ui/capture.py                 # train, sweep, capture into docs/ui/ (~3-5 min)
    .venv/bin/python docs/ui/capture.py --work /tmp/ui  # keep the store there (rerun: reuses its runs)

It trains one `debug=smoke` run with figures and a small sweep (`-m chip.level=0,1
trainer=ffm,insilico debug=smoke`) with `ffm-train` into a SQLite store of its own, starts `mlflow ui`
on it and captures the pages listed in docs/ui/README.md. Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import ui_browser

HERE = pathlib.Path(__file__).resolve().parent
TRAIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
SMOKE = ["debug=smoke", "tracking.log_images=true", "tracking.system_metrics_s=1"]  # short runs: sample every 1 s
SWEEP = ["-m", "chip.level=0,1", "trainer=ffm,insilico", *SMOKE]
FIGURES = ("learning_curves", "phase_masks_shared", "confusion_chip0", "detector_examples_chip0")
WAIT_S = 120


def ffm_train(work: pathlib.Path, uri: str, *args: str) -> None:
    cmd = [TRAIN, *args, f"tracking.uri='{uri}'"]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"ffm-train failed ({out.returncode}):\n{out.stderr[-3000:]}")


def runs(work: pathlib.Path, uri: str) -> tuple[str, object, object]:
    """(experiment id, the single run, the sweep's parent run), training them if the store lacks them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)

    def find():
        exp = client.get_experiment_by_name("ffm-optics")
        found = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'") if exp else []
        single = [r for r in found if "mlflow.parentRunId" not in r.data.tags and "sweep.role" not in r.data.tags]
        parent = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
        return (exp.experiment_id if exp else None), single, parent

    _, single, parent = find()
    if not single:
        ffm_train(work, uri, *SMOKE, f"output_dir={work}/single")
    if not parent:
        ffm_train(work, uri, *SWEEP, f"sweep.root={work}/sweeps")
    exp_id, single, parent = find()
    return exp_id, single[0], parent[0]


def settle(driver, text: str, seconds: float = 3.0) -> None:
    """Wait until ``text`` is on the page, then a little longer for charts and images to draw."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S, 0.5).until(lambda d: text in d.find_element("tag name", "body").text)
    time.sleep(seconds)  # charts (plotly) animate in; only for the picture, the test waits on elements


def open_page(driver, url: str) -> None:
    """Load ``url`` as a new page: a hash change alone does not switch the artifact MLflow shows."""
    driver.get("about:blank")
    driver.get(url)


def shoot(driver, name: str, out: pathlib.Path) -> None:
    path = out / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise SystemExit(f"capture: could not write {path}")
    print("wrote", path.relative_to(HERE.parents[1]) if path.is_relative_to(HERE.parents[1]) else path, flush=True)


def capture(url: str, exp_id: str, single, parent, out: pathlib.Path, assistant: bool) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    with ui_browser.chrome(1600, 1300) as d:
        run_id = single.info.run_id
        open_page(d, ui_browser.run_page(url, exp_id, run_id))
        settle(d, "final_test_accuracy/chip0")
        if not assistant:  # the assistant panel opens on a fresh profile and takes a quarter of the width
            shoot(d, "run_overview_as_opened", out)
            ui_browser.close_assistant(d)
            d.refresh()
            settle(d, "final_test_accuracy/chip0")
        shoot(d, "run_overview", out)
        click_text(d, "Show more")  # the description: command line and results table
        shoot(d, "run_description", out)
        open_page(d, ui_browser.run_page(url, exp_id, run_id, "model-metrics"))
        settle(d, "final_test_accuracy", 6)
        shoot(d, "run_model_metrics", out)
        open_page(d, ui_browser.run_page(url, exp_id, run_id, "system-metrics"))
        settle(d, "cpu_utilization_percentage", 6)
        shoot(d, "run_system_metrics", out)
        for fig in FIGURES:
            alt = f"figures/{fig}.png"
            open_page(d, ui_browser.run_page(url, exp_id, run_id, f"artifacts/{alt}"))
            WebDriverWait(d, WAIT_S, 0.5).until(lambda d, alt=alt: ui_browser.rendered_image(d, alt))
            time.sleep(1)
            shoot(d, f"figure_{fig}", out)
        open_page(d, f"{url}/#/experiments/{exp_id}?{ui_browser.MODEL_TRAINING}")
        settle(d, parent.info.run_name)
        expand_parent(d)
        shoot(d, "experiment_runs", out)
        open_page(d, ui_browser.run_page(url, exp_id, parent.info.run_id))
        settle(d, "Parameters")
        shoot(d, "sweep_parent_overview", out)
        open_page(d, ui_browser.run_page(url, exp_id, parent.info.run_id, "artifacts/report/sweep.png"))
        WebDriverWait(d, WAIT_S, 0.5).until(lambda d: ui_browser.rendered_image(d, "report/sweep.png"))
        time.sleep(1)
        shoot(d, "sweep_parent_report", out)


def expand_parent(driver) -> None:
    """Unfold the sweep's parent run in the runs table, so its child runs show nested under it."""
    for button in driver.find_elements("css selector", "button[data-component-id*='runnamecellrenderer']"):
        button.click()  # the (+) left of a parent run's name
    time.sleep(2)


def click_text(driver, text: str) -> None:
    """Click the element that reads ``text`` (e.g. "Show more"), if there is one."""
    for element in driver.find_elements("xpath", f"//*[normalize-space(text())='{text}']"):
        if element.is_displayed():
            element.click()
            time.sleep(1)
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="folder for the store and outputs (default: a new temporary one)")
    parser.add_argument("--out", default=str(HERE), help="where the PNGs go (default: docs/ui)")
    parser.add_argument("--assistant", action="store_true", help="leave MLflow's assistant panel open")
    args = parser.parse_args()
    if why := ui_browser.missing():
        raise SystemExit(f"capture: {why}")
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="ffm-ui-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work}/mlflow.db"
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    exp_id, single, parent = runs(work, uri)
    with ui_browser.mlflow_ui(uri, str(work / "ui.log")) as server:
        capture(server.ready(), exp_id, single, parent, out, args.assistant)
    print(json.dumps({"work": str(work), "run": single.info.run_id, "sweep_parent": parent.info.run_id}))


if __name__ == "__main__":
    main()
