"""Offline evaluation: runs, aggregation with confidence intervals, tuning, outputs, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from rlscale.configschema import ConfigError
from rlscale.envs.splits import Window, scenario_splits
from rlscale.evaluate.cli import main
from rlscale.evaluate.policies import POLICY_NAMES, PolicySpec, parse_policies
from rlscale.evaluate.report import aggregate, ci95, markdown_table
from rlscale.evaluate.runner import Task, run_task
from rlscale.sim.scenario import load_scenario


def test_ci95_uses_students_t() -> None:
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)
    assert math.isnan(ci95([5.0])[1])
    assert ci95([1.0, math.nan, 3.0])[0] == 2.0


def test_parse_policies_with_knobs() -> None:
    specs = parse_policies("static,hpa:target=0.5;metric=running,oracle")
    assert specs[1] == PolicySpec("hpa", {"target": 0.5, "metric": "running"})
    assert specs[1].label == "hpa(metric=running,target=0.5)"
    with pytest.raises(ConfigError, match="expected KNOB=VALUE"):
        parse_policies("hpa:target")


def test_every_policy_name_is_listed_in_the_help_and_in_the_unknown_name_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from rlscale.agents.baselines import BASELINES

    monkeypatch.setenv("COLUMNS", "500")  # no wrapping inside hyphenated names

    assert {"ppo", "oracle", "hpa-running", *BASELINES} <= set(POLICY_NAMES)
    with pytest.raises(ConfigError, match="unknown policy 'magic'") as raised:
        parse_policies("planner,magic")
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out.split("comma-separated, from ")[1].split(" ")[0]
    for name in POLICY_NAMES:
        assert name in str(raised.value).split("valid: ")[1].split(", "), name
        assert name in listed.split(","), name


def test_tune_has_its_own_usage_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    from rlscale.cli import main as rlscale_main

    with pytest.raises(SystemExit) as exited:
        rlscale_main(["tune", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rlscale tune")
    assert "rlscale evaluate --tuned" in out
    assert "--split" not in out
    assert "--no-plots" not in out


@pytest.mark.slow
def test_the_oracle_run_is_reproducible_and_judges_every_request() -> None:
    task = Task("hetero-3pool", PolicySpec("oracle"), Window("w", 9101, 0.0), 0, "test")
    first, second = run_task(task), run_task(task)
    for row in (first, second):
        row.pop("series")
    assert first == second
    assert first["requests"] == first["completed"] + first["failed"]
    assert first["requests"] > 40_000
    assert first["slo_attainment"] > 0.9
    assert first["cost_usd"] > 0


def test_held_out_windows_are_the_scenarios_test_split() -> None:
    scenario = load_scenario("hetero-3pool")
    splits = scenario_splits(scenario, 1800.0)
    assert [w.seed for w in splits.test] == [9101, 9102, 9103]
    assert all(w.seed >= 10_000 for w in splits.train_windows(3, 3600.0))


def test_aggregate_gives_one_row_per_policy_with_cis() -> None:
    rows = [{"policy": p, "split": "test", **{m: float(i) for m in (
        "slo_attainment", "cost_usd", "gpu_hours", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
        "itl_p50_s", "itl_p90_s", "itl_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
        "e2e_mean_s", "kv_utilization", "throughput_tok_s", "failed", "requests",
        "scaling_actions", "invalid_decisions")}} for p in ("a", "b") for i in (1, 2, 3)]
    table = aggregate(rows)
    assert [r["policy"] for r in table] == ["a", "b"]
    assert table[0]["cost_usd"] == 2.0
    assert table[0]["runs"] == 3
    assert "| a |" in markdown_table(table)


@pytest.mark.slow
def test_cli_writes_results_table_and_plots(tmp_path: Path) -> None:
    code = main(["--policies", "oracle", "--seeds", "0", "--no-tune", "--quiet",
                 "--out", str(tmp_path), "--workers", "1"])
    assert code == 0
    for name in ("results.csv", "results.json", "results.md", "replicas.png", "weights.png",
                 "ttft.png", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 + 1  # three test windows, one aggregated row
    assert rows[-1]["window"] == "all"
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["split"] == "test"
    assert len(data["series"]) == 3


def test_cli_reports_a_bad_policy_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--policies", "magic", "--no-tune", "--quiet", "--out", str(tmp_path)]) == 2
    assert "magic" in capsys.readouterr().err


def test_replica_panels_share_one_scale_across_policies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Policies compare by eye: every panel of replicas.png has the same replica and load axes."""
    from rlscale.evaluate import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: figures.append(fig) or path)

    def row(policy: str, replicas: int, load: float) -> dict[str, object]:
        series = {"time_s": [30.0, 60.0, 90.0], "replicas": [[1, 1], [replicas, 2], [2, 1]],
                  "load_rps": [1.0, load, 2.0]}
        return {"policy": policy, "window": "w", "seed": 0, "series": series}

    plots.plot_replicas(tmp_path / "replicas.png",
                        [row("small", 1, 3.0), row("big", 30, 40.0)], ["a", "b"])
    axes = figures[0].get_axes()  # two panels, each with its twin load axis
    replica_limits = {axes[i].get_ylim() for i in (0, 1)}
    load_limits = {axes[i].get_ylim() for i in (2, 3)}
    assert len(replica_limits) == 1, replica_limits
    assert len(load_limits) == 1, load_limits
    assert replica_limits.pop()[1] >= 32
    assert load_limits.pop()[1] >= 40


def test_tune_writes_tuned_json_with_the_seeds_asked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from rlscale.evaluate import cli
    from rlscale.evaluate.tune_cli import main as tune_main

    calls: list[dict[str, object]] = []

    def fake_tune(scenario: object, ref: str, specs: list[PolicySpec],
                  **kwargs: object) -> tuple[list[PolicySpec], dict[str, object]]:
        calls.append({"specs": [s.name for s in specs], **kwargs})
        record = {"policies": {"hpa": {"chosen": {"target": 0.2}, "met_target": True}}}
        return specs, record

    monkeypatch.setattr(cli, "tune", fake_tune)
    assert tune_main(["--policies", "hpa", "--seeds", "3,4", "--quiet", "--out",
                      str(tmp_path)]) == 0
    assert calls[0]["specs"] == ["hpa"]
    assert calls[0]["seeds"] == [3, 4]
    assert json.loads((tmp_path / "tuned.json").read_text())["policies"]["hpa"]["chosen"] == {
        "target": 0.2}
    assert "hpa: {'target': 0.2} (target met: True)" in capsys.readouterr().out
    assert tune_main(["--seeds", "x", "--out", str(tmp_path)]) == 2
    assert "--seeds: expected comma-separated integers" in capsys.readouterr().err
