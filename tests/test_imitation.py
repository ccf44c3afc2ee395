"""The warm start: expert decisions encoded as actions, returns, and a cloning run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from simfixtures import poisson_workload

from rlscale.agents.policy import Decision, Policy
from rlscale.configschema import ConfigError
from rlscale.envs import LLMClusterEnv
from rlscale.evaluate.policies import episode_policy, parse_policies
from rlscale.training.config import load_train_config
from rlscale.training.imitation import discounted_returns, expert_action

K, LEVELS = 2, 5
FREE = np.ones(2 * (2 * K + 1) + 2 * LEVELS, dtype=np.bool_)


def test_replica_changes_are_clipped_to_the_step_and_weights_rounded_to_levels() -> None:
    decision = Decision((9, 1), (6.0, 1.0))
    action = expert_action(decision, (3, 2), FREE, K, LEVELS)
    # +6 is clipped to +2 (index 4), -1 is index 1; weights 1 and 1/6 -> levels 4 and 1
    assert action.tolist() == [4, 1, 4, 1]


def test_a_masked_change_becomes_the_nearest_allowed_one() -> None:
    mask = FREE.copy()
    mask[3:5] = False  # pool 0 may not grow (no GPUs left)
    action = expert_action(Decision((5, 2), (1.0, 1.0)), (3, 2), mask, K, LEVELS)
    assert action[0] == K  # keep
    assert action[1] == K


def test_all_zero_weights_mean_every_pool_at_the_top_level() -> None:
    action = expert_action(Decision((3, 2), (0.0, 0.0)), (3, 2), FREE, K, LEVELS)
    assert action[2:].tolist() == [LEVELS - 1, LEVELS - 1]


def test_returns_restart_after_each_episode_and_cut_episodes_are_marked() -> None:
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    dones = np.array([False, False, True, False, False])
    returns, complete = discounted_returns(rewards, dones, gamma=0.5)
    np.testing.assert_allclose(returns, [1.75, 1.5, 1.0, 3.0, 2.0])
    assert complete.tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("expert", ["floor:capacity_fraction=0.7", "lookahead:headroom=0.1",
                                    "planner:headroom=0.2"])
def test_a_clairvoyant_or_heuristic_expert_is_accepted(expert: str) -> None:
    config = load_train_config(None, [f"imitation.expert={expert}"])
    assert config.imitation.expert == expert


@pytest.mark.parametrize(("override", "message"), [
    ("imitation.expert=ppo", "train.imitation.expert: 'ppo': unknown heuristic 'ppo'"),
    ("imitation.expert=floor:headroom=0.2", "'floor' has no knob(s) ['headroom']"),
    ("imitation.expert=planner:speed=3", "has no knob(s) ['speed']"),
    ("imitation.expert=hpa,planner", "expected one heuristic, got 2"),
    ("imitation.rounds=0", "train.imitation.rounds: expected an integer in [1, 20]"),
    ("eval.match_attainment_of=kpa", "is not one of train.eval.baselines"),
    ("eval.min_slo_attainment=1.5", "train.eval.min_slo_attainment: expected a number"),
])
def test_a_wrong_imitation_field_is_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_train_config(None, [override])
    assert message in str(caught.value)


@pytest.mark.slow
def test_cloning_the_planner_makes_the_policy_decide_like_it(tmp_path: Path) -> None:
    """After cloning, the network's own (greedy) replica choices agree with the expert's far
    more often than the untrained network's do, on states it was not fit on."""
    pytest.importorskip("sb3_contrib", reason="the train extra is not installed")
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlscale.evaluate.policies import build_policy
    from rlscale.training.config import ImitationConfig
    from rlscale.training.imitation import collect, imitate

    def make() -> LLMClusterEnv:
        return LLMClusterEnv("single-pool")

    vec_env = VecNormalize(DummyVecEnv([make]), norm_obs=True, norm_reward=True)
    model = MaskablePPO("MlpPolicy", vec_env, n_steps=64, batch_size=64, seed=0,
                        device="cpu", policy_kwargs={"net_arch": [32, 32]})
    env = vec_env.venv.envs[0]
    step, levels = env.config.control.replica_step, env.config.control.weight_levels
    spec = parse_policies("planner:headroom=0.2")[0]

    def experts(i: int) -> Policy:  # as imitate makes them: the episode's own capacities
        return build_policy(spec, env.expert_context())

    def agreement() -> float:  # on a new episode the expert drives
        vec_env.training = False  # normalization as fitted
        held_out = collect(vec_env, experts, 120, gamma=0.97, replica_step=step,
                           weight_levels=levels, rng=np.random.default_rng(7))
        vec_env.training = True
        chosen, _ = model.predict(vec_env.normalize_obs(held_out.observations),
                                  action_masks=held_out.masks, deterministic=True)
        return float((chosen[:, 0] == held_out.actions[:, 0]).mean())

    before = agreement()
    report = imitate(model, vec_env, ImitationConfig(steps=240, rounds=2, epochs=40),
                     gamma=0.97, replica_step=step, weight_levels=levels, seed=0,
                     out=tmp_path, progress=False)
    after = agreement()
    assert report["rounds"][1]["samples"] == 480
    assert 0.3 < report["rounds"][1]["expert_share"] < 0.7  # DAgger: the learner acted
    assert json.loads((tmp_path / "imitation.json").read_text())["expert"] == (
        "planner(headroom=0.2)")
    assert after >= 0.75
    assert after > before + 0.2


def test_validation_counts_cost_only_at_the_attainment_of_hpa_or_the_floor(
        tmp_path: Path) -> None:
    pytest.importorskip("sb3_contrib", reason="the train extra is not installed")
    from rlscale.sim.scenario import load_scenario
    from rlscale.training.callbacks import ValidationCallback, validation_score

    def target(*overrides: str) -> float:
        config = load_train_config(None, list(overrides))
        callback = ValidationCallback(config, load_scenario(config.scenario), tmp_path,
                                      ranges=None, baselines=[])  # type: ignore[arg-type]
        callback.baseline_rows = [{"policy": "hpa(target=0.2)", "slo_attainment": 0.972},
                                  {"policy": "planner(headroom=0.0)", "slo_attainment": 0.99}]
        return callback.target()

    assert target() == 0.985  # the packaged config's floor, above the tuned HPA's 0.972
    assert target("eval.min_slo_attainment=0") == 0.972  # the tuned HPA's
    assert target("eval.min_slo_attainment=0", "eval.match_attainment_of=null") == 0.95
    cheap_but_worse = {"slo_attainment": 0.97, "cost_usd": 10.0}
    dear_and_better = {"slo_attainment": 0.98, "cost_usd": 14.0}
    assert validation_score(dear_and_better, 0.972) > validation_score(cheap_but_worse, 0.972)


def test_the_expert_is_taught_each_episodes_own_capacities() -> None:
    """A privileged teacher: on an episode of ~4.5k-token prompts the expert's per-replica
    capacities (req/s) are those of these lengths, far below the ones the policy's observation
    is built with (the scenario's conversation lengths); nothing else differs."""
    long_prompts = poisson_workload(5.0, 3000, prompt=(4000, 5000), output=(200, 300))
    conversations = LLMClusterEnv("hetero-3pool").observation_config
    env = LLMClusterEnv("hetero-3pool", workload=long_prompts, observation=conversations,
                        overrides={"episode": {"duration_s": 300}})
    before_reset = env.expert_context()
    assert before_reset == env.policy_context()  # no episode yet: the observation's figures
    env.reset(seed=0)
    own, taught = env.policy_context(), env.expert_context()
    for mine, expert in zip(own.observation.pools, taught.observation.pools, strict=True):
        assert expert.capacity_rps < 0.5 * mine.capacity_rps, (mine, expert)
        assert dataclasses.replace(expert, capacity_rps=mine.capacity_rps) == mine
    assert taught.min_replicas == own.min_replicas
    assert taught.interval_s == own.interval_s


def test_a_clairvoyant_expert_is_given_the_requests_the_cluster_is_sent() -> None:
    """The floor as the imitation expert: it gets the episode's arrivals after the episode's
    load scale (what the cluster really serves), so it plans from them instead of refusing
    with ``NoForecast``; and it plans more replicas for a load scaled up 2x."""
    spec = parse_policies("floor:capacity_fraction=0.8")[0]
    planned, arrivals = [], []
    for scale in (1.0, 2.0):
        env = LLMClusterEnv("hetero-3pool", load_scale=scale,
                            overrides={"episode": {"duration_s": 300}})
        env.reset(seed=0)
        episode = env.expert_episode()
        assert episode.workload is not None
        expert = episode_policy(spec, episode.context, episode.scenario, episode.workload,
                                episode.offset_s)
        decision = expert.decide(env.policy_input())
        assert decision.reason == "Clairvoyant", decision
        planned.append(sum(decision.replicas))
        arrivals.append(len(episode.workload))
    assert arrivals[1] > 1.7 * arrivals[0]
    assert planned[1] > planned[0]
