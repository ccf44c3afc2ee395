"""The controller image's Python environment: the package with exactly the ``controller``
extra, installed into a fresh venv (as deploy/docker/controller.Dockerfile does), runs
``rlscale controller`` and loads the example config and the shipped bundle without torch.

The wheels are fetched once (``pip download``) into pytest's cache directory, keyed by the
requirements and the Python version; later runs install from there with ``--no-index``. The
test skips only when pip cannot reach a package index for that first download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "deploy" / "examples" / "llama3-8b-3pool" / "controller.yaml"
IMAGE_POLICIES = "/opt/rlscale/policies"
HEAVY = ("torch", "gymnasium", "stable_baselines3", "sb3_contrib", "matplotlib", "tensorboard",
         "rlscale.sim", "rlscale.envs", "rlscale.evaluate", "rlscale.train")
"""Modules the controller must not import (the train extra, the simulator)."""
UNREACHABLE = ("No matching distribution found", "Could not find a version",
               "Failed to establish a new connection", "Network is unreachable",
               "Temporary failure in name resolution", "Name or service not known",
               "Max retries exceeded", "ProxyError", "Connection refused", "timed out")

CHECK = """
import json, pathlib, sys
import rlscale
from rlscale.cli import main

try:
    code = main(["controller", "--help"])
except SystemExit as exit_:
    code = exit_.code
assert code == 0, f"rlscale controller --help exited {code}"

from rlscale.controller.config import load_config
from rlscale.controller.policies import build_policy_setup

# The image links the package's bundles to /opt/rlscale/policies; here: the installed ones.
policies = pathlib.Path(rlscale.__file__).parent / "policies"
text = pathlib.Path(sys.argv[1]).read_text().replace(sys.argv[2], str(policies))
config_path = pathlib.Path(sys.argv[3])
config_path.write_text(text)
setup = build_policy_setup(load_config(config_path))
assert setup.load_error is None, setup.load_error
assert setup.policy is not None and setup.policy.name == "ppo"

import importlib.metadata as metadata
print(json.dumps({
    "modules": sorted(sys.modules),
    "distributions": sorted(d.metadata["Name"].lower() for d in metadata.distributions()),
    "rlscale": rlscale.__file__,
}))
"""


def _pip(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False, timeout=timeout_s)


def _source_copy(dest: Path) -> Path:
    """What the Dockerfile copies (pyproject.toml, README.md, rlscale/), without caches."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "rlscale", dest / "rlscale",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def _wheel_cache(request: pytest.FixtureRequest, tmp_path: Path, source: Path) -> Path:
    """A directory of wheels for ``rlscale[controller]`` and its build backend."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    key = hashlib.sha256("\n".join([
        pyproject, sys.version, sys.platform]).encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cache_root = (cache.mkdir("rlscale-controller-wheels") if cache is not None
                  else tmp_path / "wheel-cache")
    wheels = Path(cache_root) / key
    if wheels.is_dir():
        return wheels
    partial = Path(cache_root) / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    result = _pip("download", "--quiet", "--dest", str(partial), "setuptools>=77", "wheel",
                  f"{source}[controller]")
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        output = result.stdout + result.stderr
        if any(reason in output for reason in UNREACHABLE):
            pytest.skip(f"pip cannot reach the packages: {output.strip().splitlines()[-1]}")
        pytest.fail(f"pip download failed:\n{output}")
    for own in partial.glob("rlscale-*"):
        own.unlink()
    partial.rename(wheels)
    for stale in Path(cache_root).iterdir():  # wheels of older requirements
        if stale != wheels:
            shutil.rmtree(stale, ignore_errors=True)
    return wheels


def _isolated() -> dict[str, str]:
    """This process's environment without what would put another rlscale on the fresh venv's
    path (a developer's ``PYTHONPATH=$PWD``)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.mark.slow
def test_controller_extra_installs_and_runs_without_torch(request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    started = time.perf_counter()
    source = _source_copy(tmp_path / "src")
    wheels = _wheel_cache(request, tmp_path, source)
    fetched = time.perf_counter()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    # --no-compile: bytecode is written lazily on import here (the image compiles at install).
    result = _pip("--python", str(python), "install", "--quiet", "--no-compile", "--no-index",
                  "--find-links", str(wheels), f"{source}[controller]")
    assert result.returncode == 0, f"install of rlscale[controller] failed:\n{result.stderr}"
    installed = time.perf_counter()

    check = subprocess.run(
        [str(python), "-c", CHECK, str(EXAMPLE_CONFIG), IMAGE_POLICIES,
         str(tmp_path / "controller.yaml")],
        capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path, env=_isolated())
    assert check.returncode == 0, f"the controller failed in the fresh venv:\n{check.stderr}"
    report = json.loads(check.stdout.strip().splitlines()[-1])
    assert report["rlscale"].startswith(str(venv)), "rlscale was not imported from the venv"
    heavy = [m for m in report["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not heavy, f"the controller imported {heavy}"
    train_only = {"torch", "stable-baselines3", "sb3-contrib", "gymnasium", "matplotlib",
                  "tensorboard"} & set(report["distributions"])
    assert not train_only, f"the controller extra pulled in {sorted(train_only)}"

    # The real entry point: a valid config, then no Kubernetes API to talk to -> exit code 1.
    run = subprocess.run(
        [str(venv / "bin" / "rlscale"), "controller", "--config",
         str(tmp_path / "controller.yaml"), "--kubeconfig", str(tmp_path / "no-kubeconfig")],
        capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path, env=_isolated())
    assert run.returncode == 1, f"expected exit 1 (no API), got {run.returncode}:\n{run.stderr}"
    assert re.search(r"cannot configure the Kubernetes API client", run.stderr)
    done = time.perf_counter()
    print(f"fresh venv: wheels {fetched - started:.1f} s, install {installed - fetched:.1f} s, "
          f"checks {done - installed:.1f} s, total {done - started:.1f} s")
