"""``rlscale/LLMCluster-v0``: API conformance, determinism, pickling and its semantics."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

import rlscale.envs
from rlscale.configschema import ConfigError
from rlscale.envs import ENV_ID, LLMClusterEnv, make_env
from rlscale.sim.scenario import scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "rlscale" / "scenarios"


def _scenario(name: str, **changes: Any) -> Any:
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    for section, values in changes.items():
        if section != "workload" and isinstance(values, dict) and isinstance(
                data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return scenario_from_dict(data, f"{name}-test")


def _short(name: str = "hetero-3pool", max_episode_steps: int | None = None,
           **changes: Any) -> LLMClusterEnv:
    episode = {"duration_s": 300, **changes.pop("episode", {})}
    return LLMClusterEnv(_scenario(name, episode=episode, **changes),
                         max_episode_steps=max_episode_steps)


def _warnings_of(check: Any) -> list[str]:
    """Run ``check()`` and return every warning it raised (checkers warn rather than fail)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check()
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def test_gymnasium_env_checker_passes_without_warnings() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID).unwrapped
    assert _warnings_of(lambda: check_env(env, skip_render_check=True)) == []


def test_stable_baselines3_env_checker_passes_without_warnings() -> None:
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = _short()
    assert _warnings_of(lambda: sb3_checker.check_env(env, warn=True)) == []


def test_a_bare_env_truncates_where_gymnasium_make_does() -> None:
    """A plain ``while not (terminated or truncated)`` loop over the class ends, at the same
    step as over ``gymnasium.make`` (whose ``TimeLimit`` comes from the registration)."""
    made = make_env("single-pool", overrides={"episode": {"duration_s": 300}})
    for env, expected in ((_short(), 10), (made, 10), (_short(max_episode_steps=3), 3)):
        env.reset(seed=0)
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated) and steps < 100:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert (steps, terminated, truncated) == (expected, False, True)
    assert LLMClusterEnv().max_episode_steps == gym.spec(ENV_ID).max_episode_steps
    with pytest.raises(ValueError, match="max_episode_steps"):
        LLMClusterEnv(max_episode_steps=0)


def test_registered_with_the_episode_length_of_the_default_scenario() -> None:
    spec = gym.spec(ENV_ID)
    assert spec.max_episode_steps == 60
    env = make_env("70b-tp")
    assert env.spec is not None
    assert env.spec.max_episode_steps == 60
    assert rlscale.envs.ENV_ID == ENV_ID


def _rollout(env: gym.Env[Any, Any], seed: int, steps: int) -> list[Any]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs]
    for _ in range(steps):
        obs, reward, _terminated, _truncated, info = env.step(env.action_space.sample())
        trace.append((obs, reward, info["requests"], info["cost_usd"], info["replicas"]))
    return trace


def _same(a: list[Any], b: list[Any]) -> bool:
    return pickle.dumps(a) == pickle.dumps(b)


@pytest.mark.slow
def test_one_seed_gives_identical_rollouts_another_seed_does_not() -> None:
    first = _rollout(_short(), seed=3, steps=6)
    second = _rollout(_short(), seed=3, steps=6)
    other = _rollout(_short(), seed=4, steps=6)
    assert _same(first, second)
    assert not _same(first, other)


def test_the_env_pickles_mid_episode_and_continues_identically() -> None:
    env = _short(faults={"pod_crash_per_hour": 30.0})
    env.reset(seed=1)
    env.step(env.codec.encode([1, 0, 0], [4, 2, 1]))
    clone = pickle.loads(pickle.dumps(env))
    action = env.codec.encode([0, 1, 0], [2, 2, 2])
    a = env.step(action)
    b = clone.step(action)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


@pytest.mark.slow
def test_runs_under_subproc_vec_env() -> None:
    vec_env = pytest.importorskip("stable_baselines3.common.vec_env")
    envs = vec_env.SubprocVecEnv([lambda: _short(), lambda: _short()], start_method="fork")
    try:
        envs.seed(0)
        obs = envs.reset()
        assert obs.shape == (2, envs.observation_space.shape[0])
        for _ in range(3):
            actions = np.stack([envs.action_space.sample() for _ in range(2)])
            obs, _rewards, _dones, infos = envs.step(actions)
        assert np.all(np.isfinite(obs))
        assert len(infos) == 2
    finally:
        envs.close()


def test_a_scale_up_shows_as_starting_then_ready_after_the_cold_start() -> None:
    env = _short("single-pool", episode={"duration_s": 900, "load_scale": [1.0, 1.0]})
    env.reset(seed=0)
    names = list(env.observation_names)
    starting = names.index("llama3-8b-a100/starting_frac")
    ready_index = names.index("llama3-8b-a100/ready_frac")
    obs, _, _, _, info = env.step(env.codec.encode([2], [4]))
    assert info["replicas"] == [6]
    assert info["ready"] == [4]
    assert obs[starting] == pytest.approx(2 / 16)
    cluster = env.cluster
    assert cluster is not None
    ready_at = max(p.ready_at_s for p in cluster.pool_pods[0])
    while cluster.now_s < ready_at:
        obs, _, _, _, info = env.step(env.codec.encode([0], [4]))
    assert info["ready"] == [6]
    assert obs[starting] == 0.0
    assert obs[ready_index] == pytest.approx(6 / 16)


def test_masks_forbid_what_limits_and_inventory_forbid() -> None:
    env = _short(gpus={"H100-SXM5-80GB": 3, "A100-SXM4-80GB": 8, "L4": 16})
    env.reset(seed=0)
    masks = env.action_masks()
    k = env.codec.step
    width = 2 * k + 1
    h100, a100 = masks[:width], masks[width:2 * width]
    # H100: 2 desired of max 4, but only 3 GPUs: +1 allowed, +2 not.
    assert h100.tolist() == [True, True, True, True, False]
    # A100: min 1, desired 3: -2 allowed (to 1); max 8 -> +2 allowed.
    assert a100.tolist() == [True, True, True, True, True]
    assert masks[3 * width:].all(), "every weight level is allowed"
    # An unmasked agent's out-of-range request is clamped, and info says so.
    _, _, _, _, info = env.step(env.codec.encode([2, -2, -2], [4, 4, 4]))
    assert info["replicas"][0] == 3
    assert info["clamped"] is True
    masks = env.action_masks()
    assert masks[:width].tolist() == [True, True, True, False, False]
    assert masks[width:2 * width].tolist() == [False, False, True, True, True]


def test_routing_all_traffic_to_one_pool_sends_none_to_the_others() -> None:
    env = _short()
    env.reset(seed=2)
    env.step(env.codec.encode([0, 0, 0], [0, 4, 0]))  # let requests already routed finish
    cluster = env.cluster
    assert cluster is not None
    before = len(cluster.log)
    for _ in range(3):
        _, _, _, _, info = env.step(env.codec.encode([0, 0, 0], [0, 4, 0]))
        assert info["weights"] == [0.0, 1.0, 0.0]
    data = cluster.log.arrays()
    arrived_late = data["arrival_s"][before:] > cluster.now_s - 60.0
    assert np.all(data["pool"][before:][arrived_late] == 1)


def test_faulted_pods_requests_are_retried_or_failed_never_lost() -> None:
    env = _short(faults={"pod_crash_per_hour": 120.0, "node_loss_per_hour": 20.0,
                         "node_gpus": 2, "metric_dropout_prob": 0.3})
    env.reset(seed=5)
    total_failed = 0
    for _ in range(10):
        obs, _, _, _, info = env.step(env.codec.encode([1, 1, 0], [4, 2, 1]))
        assert np.all(np.isfinite(obs))
        total_failed += info["failed"]
    cluster = env.cluster
    assert cluster is not None
    kinds = {fault.split(":")[0] for _, fault in info["faults"]}
    assert {"pod_crash", "metric_dropout"} <= kinds
    assert len(cluster.log) + cluster.in_flight == cluster.arrived
    ids = cluster.log.int_columns["id"]
    assert len(ids) == len(set(ids)), "no request ends twice"


def test_reward_is_the_documented_formula() -> None:
    env = _short(reward={"slo": 1.0, "cost": 2.0, "churn": 0.3})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.codec.encode([1, 0, -1], [4, 4, 4]))
    terms = info["reward_terms"]
    assert terms["slo"] == pytest.approx(info["slo_attainment"])
    assert terms["cost"] == pytest.approx(-2.0 * info["cost_usd"] / env.step_cost_max)
    assert terms["churn"] == pytest.approx(-0.3 * 2 / 3)
    assert reward == pytest.approx(sum(terms.values()))
    assert 0.0 < info["cost_usd"] < env.step_cost_max


def test_a_wrong_env_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"scenario\.reward\.cost: expected a number >= 0"):
        LLMClusterEnv(_scenario("hetero-3pool", reward={"cost": -1}))
    with pytest.raises(ConfigError, match=r"scenario\.control: unknown field\(s\) \['interval'\]"):
        LLMClusterEnv(_scenario("hetero-3pool", control={"interval": 10}))
    with pytest.raises(ConfigError, match="load_scale"):
        LLMClusterEnv(_scenario("hetero-3pool", episode={"load_scale": [2, 1]}))


def test_trace_windows_replay_a_real_trace() -> None:
    traces = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
    conv = traces / "AzureLLMInferenceTrace_conv.csv"
    if not conv.exists():
        pytest.skip(f"real traces not found at {traces}")
    splits = {"train": {"offset_range_s": [0, 300]},
              "validation": [{"offset_s": 600}], "test": [{"offset_s": 600}]}
    env = _short("single-pool", workload={"trace": str(conv), "time_scale": 4},
                 control={"day_length_s": 86400}, splits=splits)
    assert env.splits.train_offset_range_s == (0.0, 300.0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.codec.encode([0], [4]))
    assert info["requests"] > 0
    # The trace starts at 18:15 UTC: the time-of-day features follow the trace's clock; the
    # episode starts inside the training range.
    assert 18 * 3600 + 15 * 60 <= env.offset_s % 86400 <= 18 * 3600 + 21 * 60
    with pytest.raises(ConfigError, match="overlaps the training range"):
        _short("single-pool", workload={"trace": str(conv)}, splits={
            **splits, "test": [{"offset_s": 400}]})
    with pytest.raises(ConfigError, match="required for a trace workload"):
        _short("single-pool", workload={"trace": str(conv)})
