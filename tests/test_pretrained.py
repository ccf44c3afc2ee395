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
