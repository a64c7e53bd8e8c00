"""The README's pictures, from the default MiniLM sweep (not the tiny test sweep, where every F1
is 0), in Debian's headless Chromium driven by Playwright.

    .venv/bin/python docs/screenshots.py                  # makes the sweep in a temp dir (~3 min)
    .venv/bin/python docs/screenshots.py --workdir DIR    # a sweep already made in DIR

Writes docs/mlflow-ui.png (the runs table: the sweep's parent expanded, with the Dataset, Models
and eval_f1 columns; the confirmed winner's row carries its data sets and model) and
docs/mlflow-charts.png (MLflow's chart view comparing the trials' eval_* curves).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.cli import ui  # noqa: E402

EXPERIMENT = "minilm-synthetic"
COLUMNS = ["eval_f1", "optimizer.lr", "scheduler.name"]


def make_sweep(workdir: Path) -> None:
    env = {**os.environ, "CI": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    print(f"running the default sweep in {workdir} (python train.py -m) ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "train.py"), "-m"], cwd=workdir, env=env, check=True)


def shoot(workdir: Path, out_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with (
        ui.start(uri, "127.0.0.1", ui.free_port(), log=workdir / "server.log") as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=ui.CHROMIUM, args=ui.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 720})
            url = ui.experiment_url(uri, server.url, EXPERIMENT)
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text(f"sweep {EXPERIMENT}").first.wait_for(timeout=120_000)
            ui.close_assistant(page)
            ui.expand_parent(page, f"sweep {EXPERIMENT}")
            page.get_by_text("confirm trial-").first.wait_for(timeout=30_000)
            ui.show_columns(page, COLUMNS)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out_dir / "mlflow-ui.png"))
            print(f"wrote {out_dir / 'mlflow-ui.png'}")
            page.locator("label:has(input[name=runs-view-mode][value=CHART])").first.click()
            page.get_by_placeholder("Search metric charts").fill("eval_")  # the trials' curves
            page.get_by_text("eval_f1").first.wait_for(timeout=60_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out_dir / "mlflow-charts.png"))
            print(f"wrote {out_dir / 'mlflow-charts.png'}")
        finally:
            browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", help="a directory with the sweep's mlflow.db (default: make one)")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="where the pictures go")
    a = ap.parse_args()
    if a.workdir:
        shoot(Path(a.workdir).resolve(), Path(a.out))
        return
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        make_sweep(Path(tmp))
        shoot(Path(tmp), Path(a.out))


if __name__ == "__main__":
    main()
