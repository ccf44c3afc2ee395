"""The pretrained default policy shipped with rlscale loads and drives the default scenario."""

from __future__ import annotations

from rlscale.envs import LLMClusterEnv
from rlscale.evaluate.policies import PolicySpec, build_policy, packaged_bundle


def test_the_packaged_policy_serves_the_default_scenario() -> None:
    env = LLMClusterEnv("hetero-3pool", overrides={"episode": {"duration_s": 300}})
    pools = [p.name for p in env.scenario.cluster.pools]
    assert packaged_bundle(pools) is not None
    assert packaged_bundle(["no-such-pool"]) is None
    policy = build_policy(PolicySpec("ppo"), env.policy_context())
    observation, _ = env.reset(seed=0)
    for _ in range(5):
        decision = policy.decide(env.policy_input(observation))
        assert decision.valid
        observation, _, _, _, info = env.step_decision(decision)
        assert all(0 <= r <= p.max_replicas for r, p in zip(
            info["replicas"], env.scenario.cluster.pools, strict=True))


def test_the_packaged_policy_records_its_held_out_evaluation() -> None:
    from rlscale.agents.bundle import load_bundle

    pools = ["llama3-8b-h100", "llama3-8b-a100", "llama3-8b-l4"]
    path = packaged_bundle(pools)
    assert path is not None
    evaluation = load_bundle(path, expect_pools=pools).evaluation
    assert evaluation["split"] == "test"
    rows = {row["policy"].split("(")[0]: row for row in evaluation["aggregated"]}
    assert {"ppo", "hpa", "planner", "oracle", "static"} <= set(rows)
    assert evaluation["ratios"]["cost_ratio_to_hpa"] == rows["ppo"]["cost_usd"] / rows["hpa"][
        "cost_usd"]
