"""``rlscale simulate``: outputs, the single-pool quick study, engine flags and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlscale.cli import main as rlscale_main
from rlscale.simulate import main

SUMMARY_KEYS = {"requests", "completed", "failed", "slo_attainment", "ttft_s", "itl_s", "e2e_s",
                "gpu_hours", "cost_usd", "mean_kv_cache_usage", "output_tokens_per_s",
                "sim_wall_s"}


def _summary(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "summary.json").read_text())
    return data


@pytest.mark.slow
def test_default_scenario_writes_summary_and_per_request_csv(tmp_path: Path) -> None:
    args = ["--quiet", "--out", str(tmp_path), "--per-request-csv"]
    assert main(args) == 0
    summary = _summary(tmp_path)
    assert set(summary) >= SUMMARY_KEYS
    for key in ("ttft_s", "itl_s", "e2e_s"):
        assert set(summary[key]) == {"p50", "p90", "p99", "mean"}  # type: ignore[arg-type]
    assert summary["scenario"] == "hetero-3pool"
    assert summary["completed"] + summary["failed"] == summary["requests"]  # type: ignore[operator]
    with (tmp_path / "requests.csv").open() as rows:
        assert sum(1 for _ in csv.DictReader(rows)) == summary["requests"]


def test_same_seed_same_summary(tmp_path: Path) -> None:
    common = ["--quiet", "--scenario", "single-pool", "--seed", "7", "--max-sim-s", "600"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    a, b = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    for summary in (a, b):
        summary.pop("sim_wall_s")
        summary.pop("sim_requests_per_wall_s")
    assert a == b


def test_the_printed_table_has_a_readable_title_failures_by_reason_and_pools(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the JSON holds reaches the terminal too: no cut-off repr in the title, failures
    by reason, and one row per pool (a non-TTY is 80 columns wide)."""
    monkeypatch.setenv("COLUMNS", "80")
    args = ["--quiet", "--out", str(tmp_path), "--profile", "llama-2-7b_a100-80gb",
            "--replicas", "1", "--poisson", "4", "--requests", "600",
            "--lengths", "azure-conv-2023", "--engine", "max_num_seqs=128"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "generated Poisson: 600 requests over" in out
    assert "..." not in out
    assert "…" not in out
    assert "rate_per_s=" not in out
    reasons = _summary(tmp_path)["failed_by_reason"]
    too_long = reasons["too_long"]  # type: ignore[index]
    assert too_long > 0, "lengths beyond max_model_len fail: the row must have something to show"
    assert f"failed by reason │ too_long {too_long} (" in out
    assert "│ llama-2-7b_a100-80gb │ 1 │ 600 │" in out


def test_one_pool_from_the_command_line_with_engine_flags(tmp_path: Path) -> None:
    args = ["--quiet", "--out", str(tmp_path), "--profile", "llama-2-7b_a100-80gb",
            "--replicas", "2", "--poisson", "4", "--requests", "500",
            "--engine", "max_num_seqs=64", "--engine", "enable_chunked_prefill=false"]
    assert rlscale_main(["simulate", *args]) == 0
    summary = _summary(tmp_path)
    assert summary["requests"] == 500
    assert summary["slo_attainment"] > 0.5  # type: ignore[operator]


def test_a_malformed_trace_is_reported_with_file_line_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "broken.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.6805900,374,44\n"
                     "2023-11-16 18:15:50.9951690,abc,109\n")
    code = main(["--quiet", "--out", str(tmp_path / "o"), "--profile", "llama-3-8b_a100-80gb",
                 "--trace", str(trace)])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.csv" in err
    assert "line 3" in err
    assert "ContextTokens" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--replicas", "nopool=3"], "unknown pool(s) ['nopool']"),
    (["--engine", "max_num_seqs=many"], "--engine max_num_seqs: expected int, got 'many'"),
    (["--engine", "flux=1"], "--engine: unknown setting 'flux'"),
    (["--poisson", "3"], "--poisson needs --requests"),
    (["--scenario", "nope"], "unknown scenario 'nope'"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    assert main(["--quiet", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
