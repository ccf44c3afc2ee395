"""The generalization suite: held-out families, matched load, tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlscale.evaluate.cli import main
from rlscale.evaluate.load import measure
from rlscale.evaluate.prepare import raw_scenario
from rlscale.evaluate.suite import (
    base_target,
    family_scenario,
    held_out_families,
    load_suite,
    settings,
)
from rlscale.sim.scenario import scenario_from_dict


def _family(name: str) -> dict[str, object]:
    return next(f for f in held_out_families() if f["name"] == name)


def test_the_suite_holds_out_the_six_families_the_issue_names() -> None:
    names = {f["name"] for f in held_out_families()}
    assert {"trace-servegen", "long-prompt", "bursty", "slow-ramp", "flash-crowd-4x",
            "gpu-shortage"} <= names
    assert all("workload" in f for f in held_out_families()), "training excludes by workload"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["long-prompt", "bursty", "flash-crowd-4x", "gpu-shortage"])
def test_families_are_scaled_to_the_base_load_on_the_base_cluster(name: str) -> None:
    suite = load_suite("generalization")
    base, _ = raw_scenario("hetero-3pool")
    target = base_target(base, "match")
    raw, note = family_scenario(base, _family(name), target, settings(suite, quick=False))
    scenario = scenario_from_dict(raw)
    workload = scenario.build_workload(np.random.default_rng(0))
    load = measure(workload, scenario_from_dict(base).cluster, scenario.slo)
    assert load.fraction == pytest.approx(target[1], rel=0.08), note
    if name == "long-prompt":
        assert workload.prompt_tokens.mean() >= 4000
    if name == "gpu-shortage":
        assert scenario.cluster.gpu_inventory["H100-SXM5-80GB"] == 2


@pytest.mark.slow
def test_a_quick_suite_prints_a_family_table_and_a_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--suite", "generalization", "--quick", "--families", "gpu-shortage",
                 "--policies", "planner", "--quiet", "--workers", "2", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "## gpu-shortage" in printed
    assert "## summary" in printed
    assert "cost at equal SLO vs floor" in printed
    assert "| planner |" in printed.split("## summary")[1], "the summary has a row per policy"
    assert (tmp_path / "gpu-shortage" / "pareto.png").stat().st_size > 0
    assert (tmp_path / "suite.md").is_file()
