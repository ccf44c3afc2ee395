"""Evaluating on any trace: windows inside the trace, automatic layout, load matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rlscale.evaluate.cli import main


def _plain_trace(path: Path, duration_s: float, rate_per_s: float, seed: int = 0) -> Path:
    """A Poisson plain-format trace (``arrival_s,prompt_tokens,output_tokens``)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate_per_s, int(duration_s * rate_per_s * 1.2)))
    arrivals = arrivals[arrivals < duration_s]
    lines = ["arrival_s,prompt_tokens,output_tokens"]
    lines += [f"{t:.4f},{int(rng.integers(200, 800))},{int(rng.integers(50, 200))}"
              for t in arrivals]
    path.write_text("\n".join(lines) + "\n")
    return path


def _single_pool_scenario(tmp_path: Path, trace: Path, test_offset_s: float) -> Path:
    raw = {
        "name": "trace-test", "slo": {"ttft_s": 2.0, "itl_s": 0.15},
        "gpus": {"A100-SXM4-80GB": 4},
        "pools": [{"name": "a100", "profile": "llama-3-8b_a100-80gb", "min_replicas": 1,
                   "max_replicas": 4, "initial_replicas": 2}],
        "workload": {"trace": str(trace)},
        "control": {"interval_s": 30, "day_length_s": 3600},
        "episode": {"duration_s": 300},
        "splits": {"train": {"offset_range_s": [0, 200]},
                   "validation": [{"seed": 1, "offset_s": 520}],
                   "test": [{"seed": 1, "offset_s": test_offset_s}]},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_test_window_past_the_traces_end_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _plain_trace(tmp_path / "short.csv", duration_s=900.0, rate_per_s=2.0)
    scenario = _single_pool_scenario(tmp_path, trace, test_offset_s=5000.0)
    code = main(["--scenario", str(scenario), "--policies", "static", "--no-tune", "--seeds",
                 "0", "--quiet", "--no-plots", "--workers", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, "a window with no requests must not be judged (it reports 100 %)"
    assert "test-0" in err and "past the end" in err, err
