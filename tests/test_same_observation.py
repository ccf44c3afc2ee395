"""Offline evaluation judges what the controller would run: the same bundle, the same
observation code, the same inputs.

The lockstep test replays one held-out evaluation episode of the shipped bundle and, at every
decision, hands what the simulated pods expose — each pod's vLLM ``/metrics`` page rendered
and parsed back, the Deployments' replica counts, the route's weights — to the real
``ControlLoop`` (bundle policy, shield, fallback) through a metric source, as a cluster would.
The controller's observation vector and decision must equal the evaluation's, bit for bit.
It also runs on a workload the bundle never saw (long prompts), where the evaluation used to
normalize with capacities recomputed from the evaluated workload while the controller used the
bundle's: both now use the bundle's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlscale.agents.bundle.io import load_bundle, save_bundle
from rlscale.controller.cluster_state import PodInfo, PoolState
from rlscale.controller.config import parse_config
from rlscale.controller.loop import ControlLoop
from rlscale.controller.observability import ControllerMetrics
from rlscale.controller.policies import build_policy_setup
from rlscale.controller.sources import CollectedMetrics
from rlscale.envs import LLMClusterEnv
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.policies import PolicySpec, build_policy, packaged_bundle, policy_observation
from rlscale.metrics.exposition import parse_pod_metrics, render_pod_metrics
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.snapshot import ClusterSnapshot
from rlscale.sim.scenario import load_scenario
from rlscale.sim.workload import Workload
from rlscale.sim.workload.mixture import parse_mixture

SCENARIO = "hetero-3pool"


class Exposed:
    """A metric source that serves what the simulated cluster exposes right now."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.snapshot: ClusterSnapshot | None = None

    def collect(self, pools: Sequence[Any], now_s: float) -> CollectedMetrics:
        snap = self.snapshot
        assert snap is not None
        samples = tuple(parse_pod_metrics(render_pod_metrics(s, model_name=self.model),
                                          pod=s.pod, pool=s.pool) for s in snap.pods)
        samples = tuple(dataclasses.replace(parsed, ready=s.ready)
                        for parsed, s in zip(samples, snap.pods, strict=True))
        states = {}
        for status in snap.pools:
            pods = tuple(PodInfo(s.pod, s.pool, "10.0.0.1", "Running", s.ready,
                                 not s.ready, True) for s in samples if s.pool == status.pool)
            states[status.pool] = PoolState(
                status.pool, status.desired_replicas, status.ready_replicas,
                status.starting_replicas, status.pending_replicas, status.draining_replicas,
                0, pods)
        weights = {p.pool: p.routing_weight for p in snap.pools}
        return CollectedMetrics(now_s, states, samples, weights, dict(snap.free_gpus), ())

    def close(self) -> None:
        pass


class Recorder:
    """Takes the controller's writes (it acts as leader on the simulated cluster)."""

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        pass

    def set_weights(self, route: Any, weights: Any) -> None:
        pass


def controller_for(scenario_name: str, bundle: str) -> ControlLoop:
    scenario = load_scenario(scenario_name)
    control = scenario.sections.get("control") or {}
    config = parse_config({
        "interval_s": float(control.get("interval_s", 30.0)),
        "staleness_s": 86400, "mode": "act",
        "pools": [{"name": p.name, "namespace": "llm", "deployment": p.name,
                   "min_replicas": p.min_replicas, "max_replicas": p.max_replicas}
                  for p in scenario.cluster.pools],
        "policy": {"bundle": bundle},
        "fallback": {"heuristic": "planner"},
        "leader_election": {"enabled": False},
    })
    setup = build_policy_setup(config)
    assert setup.load_error is None, setup.load_error
    model = scenario.cluster.pools[0].profile.model
    return ControlLoop(config, Exposed(model), setup, actuator=Recorder(),
                       metrics=ControllerMetrics())


def lockstep(workload: Workload | None, steps: int, bundle: str | None = None,
             gpus: dict[str, int] | None = None) -> list[tuple[bool, str, str]]:
    """Run the evaluation's episode and the controller side by side (the shipped bundle
    unless told; the scenario's GPU inventory, with ``gpus`` overriding some types); return
    per decision (vectors equal, decision reason, why the fallback decided or "")."""
    scenario = load_scenario(SCENARIO)
    if gpus:
        scenario = dataclasses.replace(scenario, cluster=dataclasses.replace(
            scenario.cluster, gpu_inventory={**scenario.cluster.gpu_inventory, **gpus}))
    pools = [p.name for p in scenario.cluster.pools]
    bundle = bundle or packaged_bundle(pools)
    assert bundle is not None
    spec = PolicySpec("ppo", {"bundle": bundle})
    window = scenario_splits(scenario, 1800.0).test[0]
    env = LLMClusterEnv(scenario, workload=workload, window=window if workload is None else None,
                        load_scale=1.0, time_offset_s=0.0 if workload is not None else None,
                        observation=policy_observation(spec, pools))
    observation, _ = env.reset(seed=0)
    policy = build_policy(spec, env.policy_context())
    policy.reset()
    loop = controller_for(SCENARIO, bundle)
    source = loop.source
    assert isinstance(source, Exposed)
    # The controller reads the warm-up too (its window needs the earlier snapshots for rates),
    # then starts deciding afresh where the evaluation's episode starts: its stateful parts
    # (the fallback planner's scale-down timers, the familiarity gate) begin there too.
    for snap in env.lookback.history[:-1]:
        source.snapshot = snap
        loop.run_once(snap.time_s)
    assert loop.setup.shield is not None
    loop.setup.shield.reset()
    source.snapshot = env.lookback.latest
    record = loop.run_once(env.lookback.latest.time_s)
    out = []
    for _ in range(steps):
        observed = env.policy_input(observation)
        assert loop.lookback is not None
        same = bool(np.array_equal(loop.lookback.observe(), observed.vector))
        decision = policy.decide(observed)
        assert record.replicas == dict(zip(pools, decision.replicas, strict=True)), (
            f"at {observed.time_s:.0f} s the controller wanted {record.replicas}, the "
            f"evaluation {decision.replicas} ({decision.reason}: {decision.message}); "
            f"controller: {record.message}")
        shielded = policy.last  # type: ignore[attr-defined]
        why = shielded.interventions[0] if shielded.fallback_used else ""
        assert (record.fallback_reason or "") == why, (record.fallback_reason, why)
        out.append((same, decision.reason, why))
        observation, *_ = env.step_decision(decision)
        source.snapshot = env.lookback.latest
        record = loop.run_once(env.lookback.latest.time_s)
    return out


@pytest.mark.slow
def test_the_controller_observes_and_decides_as_the_evaluation_on_a_held_out_window() -> None:
    steps = lockstep(None, 20)
    assert all(same for same, _, _ in steps), steps
    assert all(why == "" for _, _, why in steps), f"the fallback decided: {steps}"
    assert any(reason == "Policy" for _, reason, _ in steps), (
        f"the bundle never decided itself: {steps}")


@pytest.mark.slow
def test_a_bundle_on_token_loads_observes_and_decides_the_same_in_both(tmp_path: Path) -> None:
    """Feature version 2 (loads in tokens against the profiles' token capacities, which the
    bundle records): the controller computes every entry from the pods' counters and the
    bundle. The shipped network under the environment's version-2 config, seen ranges set to
    the bounds (so the familiarity gate lets it decide)."""
    scenario = load_scenario(SCENARIO)
    shipped = load_bundle(packaged_bundle([p.name for p in scenario.cluster.pools]) or "")
    config = LLMClusterEnv(scenario).observation_config
    assert config.feature_version == 2
    builder = ObservationBuilder(config)
    spec = dataclasses.replace(
        shipped.spec(), context=dataclasses.replace(shipped.policy_context(),
                                                    observation=config),
        seen_low=builder.low, seen_high=builder.high, observation_names=None,
        observation_units=None)
    path = save_bundle(tmp_path / "v2", shipped.network(), spec)
    assert load_bundle(path).observation_names == builder.names
    steps = lockstep(None, 12, str(path))
    assert all(same for same, _, _ in steps), steps


@pytest.mark.slow
def test_on_unseen_long_prompts_both_normalize_with_the_bundles_capacities() -> None:
    scenario = load_scenario(SCENARIO)
    long_prompts = parse_mixture({"families": [{"name": "long", "workload": {
        "generator": {"kind": "diurnal", "mean_rate_per_s": 10, "amplitude": 0.6,
                      "period_s": 3600},
        "lengths": {"prompt_tokens": 5000, "output_tokens": 250}}}], "load": 0.45}).draw(
        np.random.default_rng(5), 1830.0, scenario.cluster, scenario.slo.itl_s).workload
    env = LLMClusterEnv(scenario, workload=long_prompts)
    bundle = load_bundle(packaged_bundle([p.name for p in scenario.cluster.pools]) or "")
    own = [p.capacity_rps for p in env.observation_config.pools]
    trained = [p.capacity_rps for p in bundle.observation_config.pools]
    assert own != pytest.approx(trained, rel=0.2), "the workload should change capacities"
    steps = lockstep(long_prompts, 14)
    assert all(same for same, _, _ in steps), steps
    # who decides (the network, or the planner on unfamiliar observations) is the same in both
    # (checked at every step by lockstep); the shipped bundle, trained on a mixture with long
    # prompts, knows these and decides itself
    assert all(why == "" for _, _, why in steps), steps


def test_the_shipped_bundle_was_trained_on_the_default_scenarios_observation() -> None:
    """So that judging it with its own observation changes nothing on hetero-3pool (a bundle
    of feature version 1 records no token capacities: the rest must agree)."""
    scenario = load_scenario(SCENARIO)
    pools = [p.name for p in scenario.cluster.pools]
    own = policy_observation(PolicySpec("ppo"), pools)
    assert own is not None
    env_config = LLMClusterEnv(scenario).observation_config
    if own.feature_version == 1:
        env_config = dataclasses.replace(env_config, feature_version=1, pools=tuple(
            dataclasses.replace(p, prefill_tok_s=0.0, decode_tok_s=0.0)
            for p in env_config.pools))
    assert own == env_config
    assert policy_observation(PolicySpec("planner"), pools) is None


@pytest.mark.slow
def test_under_a_gpu_shortage_both_guard_the_slo_the_same_way() -> None:
    """Half the H100 and A100 GPUs (the suite's shortage): the bundle leaves the short pools
    overloaded, the SLO guard lifts its decisions to the planner's, in the controller as in
    the evaluation (replicas compared at every decision by lockstep)."""
    steps = lockstep(None, 20, gpus={"H100-SXM5-80GB": 2, "A100-SXM4-80GB": 4})
    assert all(same for same, _, _ in steps), steps
    assert sum(reason == "SloGuard" for _, reason, _ in steps) >= 3, steps
