"""The architecture as the tree shows it: layers that import one way only (pyproject.toml,
`[tool.importlinter]`), checked with import-linter on the code as it is and on a copy with a
back-edge, which must fail."""

from __future__ import annotations

import ast
import os
import re
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


MAX_LINES = 60


def long_functions(root: Path, limit: int) -> list[tuple[int, str]]:
    """Functions and methods longer than `limit` lines, counted from the first decorator (or the
    `def`) to the last line of the body."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append((length, f"{path.relative_to(root.parent)}:{start} {node.name}"))
    return sorted(found, reverse=True)


def test_no_function_in_sweep_is_longer_than_60_lines():
    assert long_functions(ROOT / "sweep", MAX_LINES) == []


def test_the_length_check_sees_a_long_function(tmp_path):
    pkg = tmp_path / "sweep"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"@staticmethod\ndef short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(pkg, MAX_LINES) == [(MAX_LINES + 1, "sweep/m.py:6 long")]
    assert long_functions(pkg, MAX_LINES + 1) == []


PRIVATE = re.compile(r"\._storage\b|\._study_id\b|\._trial_id\b|hydra\._internal\b")


def test_private_optuna_and_hydra_access_lives_only_in_the_adapter():
    users = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "sweep").rglob("*.py"))
        if path.name != "internals.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert users == []
    assert PRIVATE.search((ROOT / "sweep" / "core" / "internals.py").read_text())


# the entry points, and the one exit for bad input that they (and the Hydra error hook train.py
# installs) call
EXITS_ALLOWED = {
    "train.py",
    "sweep/__main__.py",
    "hydra_plugins/sweep_optuna/sweep_optuna.py",
    "sweep/core/errors.py",
}


def _is_exit(node: ast.AST) -> bool:
    """`sys.exit(...)`, `os._exit(...)`, `exit(...)` or `raise SystemExit`."""
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "SystemExit"
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            return (f.value.id, f.attr) in {("sys", "exit"), ("os", "_exit")}
        return isinstance(f, ast.Name) and f.id in {"exit", "quit"}
    return False


def exits(root: Path) -> list[str]:
    """`file:line` of every process exit in train.py, sweep/ and hydra_plugins/."""
    paths = [
        root / "train.py",
        *(root / "sweep").rglob("*.py"),
        *(root / "hydra_plugins").rglob("*.py"),
    ]
    found = []
    for path in sorted(p for p in paths if p.is_file()):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(root).as_posix()
        found += [f"{rel}:{n.lineno}" for n in ast.walk(tree) if _is_exit(n)]
    return found


def test_only_entry_points_exit_the_process():
    found = exits(ROOT)
    assert [f for f in found if f.rsplit(":", 1)[0] not in EXITS_ALLOWED] == []
    assert any(f.startswith("hydra_plugins/") for f in found)  # the check sees the shim


def test_the_exit_check_sees_an_exit_in_a_library_module(tmp_path):
    (tmp_path / "sweep" / "search").mkdir(parents=True)
    body = 'import sys\n\n\ndef f():\n    "sys.exit(1) in a string"\n    sys.exit(2)\n'
    (tmp_path / "sweep" / "search" / "m.py").write_text(body)
    (tmp_path / "sweep" / "m2.py").write_text("def g():\n    raise SystemExit(3)\n")
    assert exits(tmp_path) == ["sweep/m2.py:2", "sweep/search/m.py:6"]


def test_the_installed_requirements_are_consistent():
    """`pip check` on this environment (the dev extra brings Ray, submitit, joblib: their pins
    must agree; hydra-ray-launcher is left out because its cloudpickle<3 would not)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
