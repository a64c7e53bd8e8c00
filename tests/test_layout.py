"""The architecture as the tree shows it: layers that import one way only (pyproject.toml,
`[tool.importlinter]`), checked with import-linter on the code as it is and on a copy with a
back-edge, which must fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_point_one_way_and_no_siblings_form_a_cycle():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def copy_tree(dst: Path) -> Path:
    for part in ("sweep", "hydra_plugins"):
        shutil.copytree(ROOT / part, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_a_back_edge_or_a_sibling_cycle_breaks_the_contract(tmp_path):
    up = copy_tree(tmp_path / "up")
    config = up / "sweep" / "core" / "config.py"
    config.write_text(config.read_text() + "\nfrom sweep.cli import report  # noqa\n")
    proc = lint(up)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "sweep.core is not allowed to import sweep.cli" in proc.stdout

    cycle = copy_tree(tmp_path / "cycle")
    study = cycle / "sweep" / "search" / "study.py"
    study.write_text(study.read_text() + "\nfrom sweep.search import sweeper  # noqa\n")
    proc = lint(cycle)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "No cycles are allowed in sweep.search" in proc.stdout
