"""Evaluating on any trace: windows inside the trace, automatic layout, load matching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlscale.configschema import ConfigError
from rlscale.envs.splits import Window
from rlscale.evaluate.cli import main
from rlscale.evaluate.load import parse_target, scaled_config
from rlscale.evaluate.windows import auto_layout, check_trace_windows

TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


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
    assert "test-0" in err, err
    assert "past the end" in err, err


def test_auto_layout_trains_on_the_first_half_and_says_so() -> None:
    layout = auto_layout(3500.0, 1800.0, 30.0, 1)
    assert layout.episode_s == 1710.0, "half the trace (1750 s) less warm-up, whole intervals"
    assert [w.offset_s for w in layout.test] == [1750.0]
    assert layout.train_range_s[1] <= 1750.0 - 1740.0
    assert "split in halves" in layout.note
    assert "shortened" in layout.note
    with pytest.raises(ConfigError, match="cannot hold"):
        auto_layout(400.0, 1800.0, 30.0, 1)


def test_check_trace_windows_accepts_windows_inside() -> None:
    check_trace_windows([Window("test-0", 0, 100.0)], 330.0, 500.0, 30.0)
    with pytest.raises(ConfigError, match="test-1"):
        check_trace_windows([Window("test-1", 0, 300.0)], 330.0, 500.0, 30.0)


def test_target_loads_parse_and_scale_workloads() -> None:
    assert parse_target("30000tok/s") == ("tokens_per_s", 30000.0)
    assert parse_target("0.45") == ("fraction", 0.45)
    for bad in ("fast", "-1", "0", "12 req/s"):
        with pytest.raises(ConfigError, match="target-load"):
            parse_target(bad)
    generated = {"generator": [{"kind": "poisson", "rate_per_s": 2},
                               {"kind": "diurnal", "mean_rate_per_s": 4, "amplitude": 0.5,
                                "period_s": 60}], "lengths": "azure-conv-2023"}
    scaled = scaled_config(generated, 1.5)
    assert [g.get("rate_per_s", g.get("mean_rate_per_s")) for g in scaled["generator"]] == [
        3.0, 6.0]
    assert generated["generator"][0]["rate_per_s"] == 2, "the input is not modified"
    assert scaled_config({"trace": "x.csv", "rate_scale": 2.0}, 0.5)["rate_scale"] == 1.0


@pytest.mark.slow
def test_evaluate_on_a_trace_lays_out_windows_and_matches_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _plain_trace(tmp_path / "mine.csv", duration_s=900.0, rate_per_s=2.0)
    scenario = _single_pool_scenario(tmp_path, trace, test_offset_s=520.0)
    out = tmp_path / "o"
    code = main(["--scenario", str(scenario), "--trace", str(trace), "--target-load", "0.3",
                 "--policies", "planner", "--no-tune", "--seeds", "0", "--quiet", "--no-plots",
                 "--workers", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "split in halves" in printed
    assert "load matched to 0.3" in printed
    resolved = yaml.safe_load((out / "scenario.yaml").read_text())
    assert resolved["splits"]["test"][0]["offset_s"] >= 440.0, "tests on the second half"
    assert resolved["workload"]["rate_scale"] > 0
    assert "| planner |" in printed
    assert "shield" in printed


def test_time_scale_needs_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--time-scale", "2", "--policies", "static", "--no-tune", "--quiet",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "only a trace" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_trace_replays_with_the_default_pools(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = TRACES / "servegen_language_m-large_1h.csv"
    if not trace.is_file():
        pytest.skip(f"{trace} is not here (it is in CI)")
    code = main(["--trace", str(trace), "--policies", "planner", "--no-tune", "--seeds", "0",
                 "--quiet", "--no-plots", "--workers", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "hetero-3pool-servegen" in printed
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["runs"][0]["requests"] > 30_000, "a second-half window of a 30 req/s trace"
