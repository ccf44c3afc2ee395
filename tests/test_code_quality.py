"""The code base stays ruff- and mypy-clean, and layers point one way."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (dev extra)")
def test_ruff_is_clean() -> None:
    result = subprocess.run(["ruff", "check", "rlscale", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, "ruff found problems; run `ruff check --fix`:\n" + result.stdout


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (dev extra)")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, "mypy found problems:\n" + result.stdout


def _imports(package: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("rlscale/sim", ("gymnasium", "torch", "stable_baselines3", "rlscale.envs",
                     "rlscale.agents", "rlscale.controller")),
    ("rlscale/metrics", ("gymnasium", "torch", "rlscale.sim")),
    ("rlscale/controller", ("gymnasium", "torch", "stable_baselines3", "sb3_contrib",
                            "rlscale.sim", "rlscale.envs", "rlscale.twin")),
    ("rlscale/twin", ("gymnasium", "torch", "stable_baselines3", "sb3_contrib", "rlscale.envs",
                      "rlscale.agents", "rlscale.controller", "rlscale.evaluate")),
])
def test_layers_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    bad = [f"{path} imports {name}" for path, names in _imports(ROOT / package).items()
           for name in names if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not bad, "layering violated:\n" + "\n".join(bad)
