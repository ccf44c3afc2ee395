"""The pretrained default policy shipped with rlscale: it decides itself (not its fallback), and
the README's evaluation table is the bundle's recorded evaluation, reproduced by a fresh run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rlscale.agents.bundle.io import load_bundle
from rlscale.agents.shield import ShieldedPolicy
from rlscale.envs import LLMClusterEnv
from rlscale.evaluate.policies import (
    PolicySpec,
    build_policy,
    packaged_bundle,
    policy_observation,
)

POOLS = ["llama3-8b-h100", "llama3-8b-a100", "llama3-8b-l4"]
README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_packaged_policy_serves_the_default_scenario_and_decides_itself() -> None:
    """Every decision comes from the bundle's network: a bundle whose shield always fell back
    to the planner would pass a test of valid decisions alone. The environment builds the
    bundle's own observation (as ``rlscale evaluate`` and the controller do)."""
    assert packaged_bundle(["no-such-pool"]) is None
    assert packaged_bundle(POOLS) is not None
    env = LLMClusterEnv("hetero-3pool", overrides={"episode": {"duration_s": 300}},
                        observation=policy_observation(PolicySpec("ppo"), POOLS))
    pools = [p.name for p in env.scenario.cluster.pools]
    assert pools == POOLS
    policy = build_policy(PolicySpec("ppo"), env.policy_context())
    assert isinstance(policy, ShieldedPolicy)
    observation, _ = env.reset(seed=0)
    for _ in range(10):
        observed = env.policy_input(observation)
        own = policy.policy.decide(observed)  # the network alone, unshielded
        decision = policy.decide(observed)
        assert policy.last is not None
        assert not policy.last.fallback_used, decision.message
        assert own.valid
        assert own.reason == "Policy"
        assert decision.reason == "Policy" or policy.last.interventions, decision.message
        if not policy.last.interventions:
            assert decision.replicas == own.replicas
        observation, _, _, _, info = env.step_decision(decision)
        assert all(0 <= r <= p.max_replicas for r, p in zip(
            info["replicas"], env.scenario.cluster.pools, strict=True))


def _evaluation() -> dict[str, Any]:
    path = packaged_bundle(POOLS)
    assert path is not None
    evaluation: dict[str, Any] = load_bundle(path, expect_pools=POOLS).evaluation
    return evaluation


def _readme_table() -> dict[str, dict[str, str]]:
    """The pretrained policy's table in the README: policy -> column -> cell text."""
    text = README.read_text()
    section = text[text.index("### The pretrained policy"):text.index("## The controller")]
    first = section.index("\n|")
    lines = []  # the section's first table
    for line in section[first + 1:].splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.sub(r"[*]|\s*\(.*\)", "", cells[0])
        rows[name] = dict(zip(header, cells, strict=True))
    return rows


def _cells(row: dict[str, Any]) -> dict[str, str]:
    """A recorded (or fresh) aggregated row formatted as the README writes it."""
    return {
        "SLO attainment": f"{row['slo_attainment']:.1%}".replace("%", " %")
        + f" ± {row['slo_attainment_ci95'] * 100:.1f}",
        "cost ($ per 30 min)": f"{row['cost_usd']:.2f} ± {row['cost_usd_ci95']:.2f}",
        "TTFT p90 (s)": f"{row['ttft_p90_s']:.2f}",
        "ITL p90 (s)": f"{row['itl_p90_s']:.3f}",
        "KV util": f"{row['kv_utilization']:.1%}".replace("%", " %"),
    }


def test_the_readme_table_is_the_bundles_recorded_evaluation() -> None:
    evaluation = _evaluation()
    assert evaluation["split"] == "test"
    assert evaluation["seeds"] == [0, 1, 2]
    recorded = {row["policy"].split("(")[0]: row for row in evaluation["aggregated"]}
    readme = _readme_table()
    assert set(readme) == set(recorded) == {"ppo", "hpa", "keda", "kpa", "planner",
                                            "lookahead", "static"}
    for name, row in recorded.items():
        assert row["runs"] == 9, name
        for column, cell in _cells(row).items():
            assert readme[name][column] == cell, (name, column)
    ratio = evaluation["ratios"]["cost_ratio_to_hpa"]
    assert ratio == recorded["ppo"]["cost_usd"] / recorded["hpa"]["cost_usd"]
    assert f"(ratio {ratio:.3f})" in " ".join(README.read_text().split())


@pytest.mark.slow
def test_a_fresh_evaluation_of_the_shipped_policy_reproduces_its_readme_row() -> None:
    """The README's ppo row, rerun from scratch (3 test windows x 3 seeds, about 2-4 minutes
    on 2 cores): the simulator is deterministic, so every digit must come back."""
    from rlscale.envs.splits import scenario_splits
    from rlscale.evaluate.report import aggregate
    from rlscale.evaluate.runner import run_tasks, tasks_for
    from rlscale.sim.scenario import load_scenario

    scenario = load_scenario("hetero-3pool")
    windows = scenario_splits(scenario, 1800.0).windows("test")
    rows = run_tasks(tasks_for("hetero-3pool", [PolicySpec("ppo")], windows, [0, 1, 2], "test"),
                     progress=False)
    fresh = aggregate(rows)[0]
    assert fresh["runs"] == 9
    assert _cells(fresh) == {k: v for k, v in _readme_table()["ppo"].items() if k != "policy"}
