"""The code base stays ruff- and mypy-clean (layers: tests/test_layers.py)."""

from __future__ import annotations

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


@pytest.mark.slow  # about a minute on a fresh clone (no mypy cache)
def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (dev extra)")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, "mypy found problems:\n" + result.stdout
