"""The fast engine (``rlscale.sim.fluid``): conservation, latencies against the request-level
engine where both are exact enough to agree, pod lifecycle and billing, exported metrics, and
the environment's ``engine.mode`` switch."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from rlscale.configschema import ConfigError
from rlscale.envs import LLMClusterEnv
from rlscale.envs.config import env_config
from rlscale.metrics.exposition import parse_pod_metrics, render_pod_metrics
from rlscale.metrics.intervals import interval_stats
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot
from rlscale.sim.backend import make_cluster, snapshot_of
from rlscale.sim.fluid import FluidCluster
from rlscale.sim.fluid.log import ArrayLog
from rlscale.sim.fluid.pool import FluidPool
from rlscale.sim.fluid.requests import crossing, reached
from rlscale.sim.profile import load_profile
from rlscale.sim.scenario import load_scenario
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.stats import FAIL_GATEWAY_TIMEOUT, summarize_requests
from rlscale.sim.workload import ConstantLengths, Poisson, Workload, generate

A100 = load_profile("llama-3-8b_a100-80gb")


def _spec(replicas: int = 2, *, start_cold: bool = False, gpus: int = 8) -> ClusterSpec:
    pool = PoolSpec("a100", A100, min_replicas=0, max_replicas=8, initial_replicas=replicas)
    return ClusterSpec((pool,), {A100.gpu: gpus}, gateway_timeout_s=20.0, start_cold=start_cold)


def _poisson(rate: float, duration_s: float, prompt: int = 500, output: int = 100,
             seed: int = 0) -> Workload:
    return generate(Poisson(rate), ConstantLengths(prompt, output), duration_s,
                    np.random.default_rng(seed))


def _run(mode: str, spec: ClusterSpec, workload: Workload, until_s: float) -> object:
    cluster = make_cluster(mode, spec, workload, np.random.default_rng(1))
    for k in range(1, int(until_s / 30) + 1):
        cluster.run_until(30.0 * k)
    return cluster


def test_every_request_ends_exactly_once() -> None:
    workload = _poisson(20.0, 300.0)
    cluster = FluidCluster(_spec(), workload, np.random.default_rng(0))
    cluster.run_until(300.0)
    cluster.run_to_completion()
    ids = cluster.log.arrays()["id"]
    assert sorted(ids.tolist()) == list(range(len(workload))), "lost or duplicated requests"
    assert cluster.in_flight == 0


@pytest.mark.slow
def test_light_load_latencies_match_the_request_level_engine() -> None:
    workload = _poisson(4.0, 600.0)
    summaries = {}
    for mode in ("request", "fast"):
        cluster = _run(mode, _spec(), workload, 600.0)
        summaries[mode] = summarize_requests(cluster.log, SLO(2.0, 0.15))  # type: ignore[attr-defined]
    fast, ref = summaries["fast"], summaries["request"]
    assert fast["slo_attainment"] == pytest.approx(ref["slo_attainment"], abs=0.01)
    for name in ("ttft_s", "itl_s"):
        assert fast[name]["p50"] == pytest.approx(ref[name]["p50"], rel=0.3), name


def test_overload_builds_a_queue_and_slows_first_tokens() -> None:
    workload = _poisson(15.0, 300.0, prompt=2000, output=300)
    cluster = FluidCluster(_spec(1), workload, np.random.default_rng(0))
    cluster.run_until(300.0)
    snapshot = snapshot_of(cluster)
    assert sum(p.num_requests_waiting for p in snapshot.pods) > 100
    data = cluster.log.arrays()
    done = data["failure"] == 0
    arrival, ttft = data["arrival_s"][done], data["ttft_s"][done]
    assert np.median(ttft[(arrival > 20) & (arrival < 40)]) > 5 * np.median(ttft[arrival < 5])


def test_without_ready_replicas_requests_wait_at_the_gateway_then_fail() -> None:
    workload = _poisson(5.0, 100.0)
    cluster = FluidCluster(_spec(0), workload, np.random.default_rng(0))
    cluster.run_until(30.0)
    data = cluster.log.arrays()
    assert (data["failure"] == FAIL_GATEWAY_TIMEOUT).all()
    assert np.allclose(data["end_s"] - data["arrival_s"], 20.0)
    cluster.set_replicas(0, 1)
    assert snapshot_of(cluster).pools[0].starting_replicas == 1


def test_cold_start_and_billing_follow_the_pods_like_the_request_level_engine() -> None:
    workload = _poisson(2.0, 600.0)
    for mode in ("request", "fast"):
        cluster = make_cluster(mode, _spec(1, start_cold=True), workload,
                               np.random.default_rng(3))
        cluster.run_until(30.0)
        assert snapshot_of(cluster).pools[0].ready_replicas == 0
        cluster.run_until(600.0)
        hours = 600.0 / 3600.0
        assert cluster.gpu_hours(0) == pytest.approx(hours), mode
        assert cluster.cost_usd(0) == pytest.approx(hours * A100.price_per_gpu_hour), mode


def test_pending_pods_wait_for_gpus_of_their_type() -> None:
    cluster = FluidCluster(_spec(1, gpus=2), _poisson(1.0, 60.0), np.random.default_rng(0))
    cluster.set_replicas(0, 4)
    status = snapshot_of(cluster).pools[0]
    assert (status.ready_replicas, status.starting_replicas, status.pending_replicas) == (1, 1, 2)
    assert cluster.gpu_free[A100.gpu] == 0


def test_scale_down_drains_and_bills_until_the_pod_is_done() -> None:
    cluster = FluidCluster(_spec(2), _poisson(20.0, 120.0, output=400), np.random.default_rng(0))
    cluster.run_until(60.0)
    cluster.set_replicas(0, 1)
    assert snapshot_of(cluster).pools[0].draining_replicas == 1
    cluster.run_until(120.0)
    status = snapshot_of(cluster).pools[0]
    assert (status.ready_replicas, status.draining_replicas) == (1, 0)
    assert 60.0 / 3600 < cluster.gpu_hours(0) - 120.0 / 3600 < 120.0 / 3600


def test_pods_export_per_pod_metrics_whose_sums_are_the_pools() -> None:
    cluster = FluidCluster(_spec(3), _poisson(15.0, 120.0), np.random.default_rng(0))
    cluster.run_until(30.0)
    first = snapshot_of(cluster)
    cluster.run_until(60.0)
    second = snapshot_of(cluster)
    assert [p.pod for p in second.pods] == [p.pod for p in first.pods]
    assert len(second.pods) == 3
    for before, after in zip(first.pods, second.pods, strict=True):
        assert after.request_success_total >= before.request_success_total
        assert all(b <= a for b, a in zip(before.time_to_first_token_seconds.cumulative,
                                          after.time_to_first_token_seconds.cumulative,
                                          strict=True))
    finished = int((cluster.log.arrays()["failure"] == 0).sum())
    assert sum(p.request_success_total for p in second.pods) == pytest.approx(finished, abs=3)
    pool = PoolInfo(name="a100", gpu_type=A100.gpu, gpus_per_replica=1, max_replicas=8,
                    max_num_seqs=A100.max_num_seqs, price_per_replica_hour=1.0,
                    capacity_rps=5.0, gpu_inventory=8)
    config = ObservationConfig(pools=(pool,), slo_ttft_s=2.0, slo_itl_s=0.15)
    stats = interval_stats(first, second, config)
    assert stats[0].arrival_rps == pytest.approx(15.0, rel=0.3)


def _scraped(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """``snapshot`` as a controller gets it: each pod's ``/metrics`` page parsed back."""
    pods = tuple(parse_pod_metrics(render_pod_metrics(p, model_name="m"), pod=p.pod, pool=p.pool)
                 for p in snapshot.pods)
    return ClusterSnapshot(snapshot.time_s, snapshot.pools, pods, snapshot.free_gpus)


def test_the_fast_engines_counters_observe_exactly_as_its_pods_scraped_pages() -> None:
    env = LLMClusterEnv("hetero-3pool", {"engine": {"mode": "fast"},
                                         "episode": {"duration_s": 300}})
    env.action_space.seed(2)
    observation, _ = env.reset(seed=2)
    builder = ObservationBuilder(env.observation_config)
    scraped: dict[int, tuple[ClusterSnapshot, ClusterSnapshot]] = {}  # id: (engine's, scraped)
    for step in range(16):
        history = env.lookback.history
        assert all(s.counters() is not None for s in history)
        for s in history:
            if id(s) not in scraped:
                scraped[id(s)] = (s, _scraped(s))
        assert np.array_equal(builder.observe([scraped[id(s)][1] for s in history]),
                              observation)
        observation, _, _, _, _ = env.step(env.action_space.sample())
        if step == 8:
            observation, _ = env.reset()
    assert sum(len(s.pods) for s, _ in scraped.values()) > 30


def test_a_replaced_fluid_snapshot_is_observed_from_its_own_pods() -> None:
    cluster = FluidCluster(_spec(3), _poisson(15.0, 120.0), np.random.default_rng(0))
    cluster.run_until(30.0)
    snapshot = snapshot_of(cluster)
    fewer = dataclasses.replace(snapshot, pods=snapshot.pods[1:])
    assert fewer.counters() is None
    assert [p.pod for p in fewer.pods] == [p.pod for p in snapshot.pods[1:]]
    counters = snapshot.counters()
    assert counters is not None
    assert len(counters.names) == 3


def test_crossing_reads_the_first_time_a_curve_reaches_a_target() -> None:
    times = np.array([0.0, 1.0, 2.0, 3.0])
    curve = np.array([0.0, 10.0, 10.0, 30.0])
    got = crossing(curve, times, np.array([-1.0, 5.0, 10.0, 20.0, 31.0]))
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 2.5, np.inf])


@pytest.mark.parametrize("with_rate", [False, True])
def test_reached_is_crossing_for_targets_the_curve_gets_to(with_rate: bool) -> None:
    rng = np.random.default_rng(5)
    times = np.cumsum(rng.uniform(0.5, 1.5, 200))
    curve = np.cumsum(np.where(rng.random(200) < 0.3, 0.0, rng.uniform(0, 50, 200)))
    rate = rng.uniform(0.0, 80.0, 200) if with_rate else None
    targets = rng.uniform(curve[0], curve[-1], 500)
    np.testing.assert_array_equal(reached(curve, times, targets, rate),
                                  crossing(curve, times, targets, rate))


def test_a_fluid_advanced_sub_steps_at_once_equals_one_by_one() -> None:
    rng = np.random.default_rng(2)
    ends = (np.arange(1, 61) * 1.0).tolist()
    replicas = rng.integers(0, 4, 60).astype(float).tolist()
    tokens = rng.uniform(0, 40_000, 60).tolist()
    requests = [t / 800.0 for t in tokens]
    together, apart = FluidPool(A100, 200.0), FluidPool(A100, 200.0)
    together.advance(ends, replicas, tokens, requests)
    for row in zip(ends, replicas, tokens, requests, strict=True):
        apart.advance(*([value] for value in row))
    for name in ("times", "prefilled", "iterations", "decode_step_s", "prefill_rate"):
        np.testing.assert_array_equal(getattr(together, name)[:61], getattr(apart, name)[:61])
    assert (together.queue_tokens, together.decoding, together.kv_token_seconds) == (
        apart.queue_tokens, apart.decoding, apart.kv_token_seconds)
    assert together.itl_values == apart.itl_values


def test_every_request_ends_once_through_overload_scaling_and_reweighting() -> None:
    workload = _poisson(30.0, 600.0, prompt=1500, output=200)
    cluster = FluidCluster(_spec(1), workload, np.random.default_rng(4))
    for k, replicas in enumerate([1, 3, 3, 0, 2, 1, 4, 4, 1, 2], start=1):
        cluster.set_replicas(0, replicas)
        cluster.run_until(60.0 * k)
        queues = cluster.queues[0]
        assert np.all(np.diff(queues.queued[:, 5]) > 0), "the queue left dispatch order"
    cluster.set_replicas(0, 2)
    cluster.run_to_completion()
    ids = cluster.log.arrays()["id"]
    assert sorted(ids.tolist()) == list(range(len(workload))), "lost or duplicated requests"


def test_both_engines_draw_the_same_cold_starts_and_pool_choices() -> None:
    """The fast engine takes the router's draws as the request-level engine does, so the same
    seed and actions give the same pods, ready at the same times, and the same requests in the
    same pools: a calibration replay then differs by the engines alone."""
    scenario = load_scenario("hetero-3pool")
    workload = scenario.build_workload(np.random.default_rng(9), {"duration_s": 600})
    clusters = [make_cluster(mode, scenario.cluster, workload, np.random.default_rng(5))
                for mode in ("request", "fast")]
    plan = {2: (0, 4), 4: (2, 8), 6: (1, 6), 8: (2, 2), 10: (1, 8), 13: (2, 10)}
    for step in range(1, 21):
        for cluster in clusters:
            if step in plan:
                cluster.set_replicas(*plan[step])
            if step == 12:
                cluster.set_weights([1.0, 1.0, 1.0])
            cluster.run_until(30.0 * step)
    ready = [sorted((p.pool, p.id, p.ready_at_s) for pods in c.pool_pods for p in pods)
             for c in clusters]
    assert ready[0] == ready[1]
    logs = [c.log.arrays() for c in clusters]
    pools = [dict(zip(log["id"].tolist(), log["pool"].tolist(), strict=True)) for log in logs]
    both = sorted(set(pools[0]) & set(pools[1]))
    assert len(both) > 0.8 * len(workload)
    same = sum(pools[0][i] == pools[1][i] for i in both)
    assert same == len(both), f"{len(both) - same} of {len(both)} requests changed pool"


def test_requests_dropped_at_the_drain_timeout_do_not_delay_later_ones() -> None:
    from dataclasses import replace

    spec = replace(_spec(1), drain_timeout_s=30.0)
    heavy = _poisson(40.0, 60.0, prompt=3000, output=500)
    light = Workload(np.arange(300.0, 400.0, 2.0), np.full(50, 200), np.full(50, 20))
    workload = Workload(np.concatenate([heavy.arrival_s, light.arrival_s]),
                        np.concatenate([heavy.prompt_tokens, light.prompt_tokens]),
                        np.concatenate([heavy.output_tokens, light.output_tokens]))
    cluster = FluidCluster(spec, workload, np.random.default_rng(0))
    cluster.run_until(60.0)
    cluster.set_replicas(0, 0)  # the last pod drains, then drops what it has at 90 s
    cluster.run_until(120.0)
    assert (cluster.log.arrays()["failure"] > 0).any(), "nothing was dropped: no test"
    cluster.set_replicas(0, 1)
    cluster.run_until(450.0)
    data = cluster.log.arrays()
    later = data["arrival_s"] >= 300.0
    assert later.sum() == 50
    assert np.nanmax(data["ttft_s"][later]) < 1.0, "later requests waited for dropped prompts"


def test_array_log_slices_across_chunks() -> None:
    log = ArrayLog()
    for start in (0, 3):
        rows = {name: np.arange(start, start + 3) for name in (
            "arrival_s", "ttft_s", "itl_s", "e2e_s", "queue_s", "end_s", "id", "pool",
            "prompt_tokens", "output_tokens", "preemptions", "failure")}
        log.append(rows)
    assert len(log) == 6
    np.testing.assert_array_equal(log.int_columns["id"][2:], [2, 3, 4, 5])
    np.testing.assert_array_equal(log.columns["end_s"][4:], [4.0, 5.0])
    assert log.arrays()["id"].tolist() == list(range(6))


@pytest.mark.slow
def test_fast_env_passes_the_checker_and_is_deterministic_and_picklable() -> None:
    from gymnasium.utils.env_checker import check_env

    overrides = {"engine": {"mode": "fast"}, "episode": {"duration_s": 300}}
    env = LLMClusterEnv("hetero-3pool", overrides)
    check_env(env, skip_render_check=True)
    rollouts = []
    for _ in range(2):
        env = LLMClusterEnv("hetero-3pool", overrides)
        obs, _ = env.reset(seed=5)
        env.action_space.seed(5)
        trace = [obs]
        for _ in range(4):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace.append(np.append(obs, reward))
        rollouts.append(np.concatenate(trace))
    np.testing.assert_array_equal(rollouts[0], rollouts[1])
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    np.testing.assert_array_equal(clone.step(action)[0], env.step(action)[0])


def test_engine_mode_is_validated() -> None:
    scenario = load_scenario("hetero-3pool")
    assert env_config(scenario).engine.mode == "request"
    with pytest.raises(ConfigError, match=r"scenario\.engine\.mode"):
        env_config(scenario, {"engine": {"mode": "fluid"}})
    with pytest.raises(ConfigError, match="pod crashes"):
        env_config(scenario, {"engine": {"mode": "fast"}, "faults": {"pod_crash_per_hour": 1}})


@pytest.mark.slow
def test_training_rollouts_use_the_configured_engine(tmp_path: object) -> None:
    from pathlib import Path

    from rlscale.training.config import load_train_config
    from rlscale.training.ppo import make_env_factory

    with pytest.raises(ConfigError, match="rollout_engine"):
        load_train_config(None, ["rollout_engine=turbo"])
    config = load_train_config(None, ["rollout_engine=fast"])
    env = make_env_factory(config, 0, Path(str(tmp_path)))()
    assert env.unwrapped.config.engine.mode == "fast"
