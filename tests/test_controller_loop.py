"""The control loop: what it decides, when it refuses to act, and what it reports.

A scripted metric source feeds the loop; a recording actuator stands in for the API. The
decisions go through the real observation builder, shield and heuristics (or bundle).
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from controller_fakes import (
    FakeApps,
    FakeCore,
    FakeCustom,
    clients,
    deployment,
    httproute,
    sample,
)

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.bundle.format import ActorNetwork, BundleSpec
from rlscale.agents.bundle.io import save_bundle
from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.controller.cluster_state import PodInfo, PoolState
from rlscale.controller.config import ControllerConfig, parse_config
from rlscale.controller.loop import ControlLoop, DecisionRecord
from rlscale.controller.observability import (
    ControllerMetrics,
    EventRecorder,
    HealthServer,
)
from rlscale.controller.policies import PolicySetup, TrackedPolicy, build_policy_setup
from rlscale.controller.problems import Problem
from rlscale.controller.resources import RouteConfig
from rlscale.controller.sources import CollectedMetrics
from rlscale.logformat import JsonFormatter, TextFormatter, formatter_for
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.snapshot import PodSample

POOLS = ("a", "b")


def config_data(**overrides: Any) -> dict[str, Any]:
    """Two pools (a: H100, 1-4 replicas; b: A100, 0-3), a route, static heuristics."""
    data: dict[str, Any] = {
        "interval_s": 30, "staleness_s": 90, "mode": "act",
        "slo": {"ttft_s": 2.0, "itl_s": 0.15},
        "pools": [
            {"name": "a", "namespace": "llm", "deployment": "vllm-a", "min_replicas": 1,
             "max_replicas": 4, "gpu_type": "H100", "gpus_per_replica": 1,
             "max_num_seqs": 256, "price_per_replica_hour": 6.88, "capacity_rps": 12.0,
             "gpu_inventory": 8},
            {"name": "b", "namespace": "llm", "deployment": "vllm-b", "min_replicas": 0,
             "max_replicas": 3, "gpu_type": "A100", "gpus_per_replica": 1,
             "max_num_seqs": 256, "price_per_replica_hour": 3.43, "capacity_rps": 5.0,
             "gpu_inventory": 8}],
        "httproute": {"namespace": "llm", "name": "vllm",
                      "backends": {"svc-a": "a", "svc-b": "b"}},
        "policy": {"heuristic": "static", "knobs": {"replicas": [3, 1]}},
        "fallback": {"heuristic": "static", "knobs": {"replicas": [1, 0]}},
        "shield": {"max_scale_up": 10, "max_scale_down": 10},
        "leader_election": {"enabled": False},
        # the scripted sources do not show the loop's own writes back: not outside writes
        "outside_writes": {"rule": "override"},
    }
    data.update(overrides)
    return data


def collected(t: float, *, desired: Sequence[int] = (2, 1), ready: Sequence[int] | None = None,
              samples: Sequence[PodSample] | None = None, problems: Sequence[Problem] = (),
              weights: dict[str, float] | None = None, age_s: float = 0.0,
              unsampled: Sequence[tuple[str, str]] = ()) -> CollectedMetrics:
    """One collection at ``t``: pools at ``desired`` replicas (all ready unless said), one pod
    sample per ready replica whose counters grow with ``t``; ``unsampled`` (pod, pool) are
    running pods without a sample."""
    ready = tuple(desired if ready is None else ready)
    if samples is None:
        k = int(t // 30)
        samples = [sample(f"{pool}-{i}", pool, success=20 * k, running=2, kv=0.3)
                   for pool, count in zip(POOLS, ready, strict=True) for i in range(count)]
    pools = {}
    for pool, want, count in zip(POOLS, desired, ready, strict=True):
        pods = [PodInfo(s.pod, pool, "10.0.0.1", "Running", True, False, True)
                for s in samples if s.pool == pool]
        pods += [PodInfo(name, pool, "10.0.0.9", "Running", True, False, True)
                 for name, p in unsampled if p == pool]
        pools[pool] = PoolState(pool, want, count, max(0, want - count), 0, 0, 0, tuple(pods))
    return CollectedMetrics(t, pools, tuple(samples), weights or {"a": 1.0, "b": 1.0},
                            {"H100": 8, "A100": 8}, tuple(problems), age_s)


class Source:
    """Answers with ``script(now_s)``; records the times asked."""

    def __init__(self, script: Callable[[float], CollectedMetrics]) -> None:
        self.script = script
        self.asked: list[float] = []

    def collect(self, pools: Sequence[Any], now_s: float) -> CollectedMetrics:
        self.asked.append(now_s)
        return self.script(now_s)

    def close(self) -> None:
        pass


class Recorder:
    """An actuator that records what it is asked to write."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, ...]] = []

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.writes.append(("scale", deployment, replicas))

    def set_weights(self, route: RouteConfig, weights: Mapping[str, int]) -> None:
        self.writes.append(("weights", dict(weights)))


class Wants:
    """A policy that asks for fixed replicas and weights, or raises."""

    name = "scripted"

    def __init__(self, replicas: tuple[int, ...] = (2, 1),
                 weights: tuple[float, ...] = (1.0, 1.0), error: Exception | None = None
                 ) -> None:
        self.replicas, self.weights, self.error = replicas, weights, error
        self.seen: list[PolicyInput] = []

    def reset(self) -> None:
        pass

    def decide(self, observed: PolicyInput) -> Decision:
        self.seen.append(observed)
        if self.error is not None:
            raise self.error
        return Decision(self.replicas, self.weights, True, "Scripted", "as scripted")


def make_loop(config: ControllerConfig, script: Callable[[float], CollectedMetrics], *,
              policy: Any = None, leader: bool = True, setup: PolicySetup | None = None,
              events: EventRecorder | None = None) -> tuple[ControlLoop, Recorder]:
    setup = setup or build_policy_setup(config)
    if policy is not None:
        setup.policy = TrackedPolicy(policy)
    actuator = Recorder()
    loop = ControlLoop(config, Source(script), setup, actuator=actuator,
                       metrics=ControllerMetrics(), events=events, is_leader=lambda: leader)
    return loop, actuator


# ---------------------------------------------------------------------------------- acting
def test_act_mode_scales_sets_weights_and_records_events() -> None:
    core = FakeCore()
    config = parse_config(config_data())
    loop, actuator = make_loop(config, collected, policy=Wants((3, 1), (3.0, 1.0)),
                               events=EventRecorder(core, instance="c-0", now=lambda: 0.0))
    record = loop.run_once(30.0)
    assert record.reason == "Scripted"
    assert record.policy == "scripted"
    assert record.fallback_reason is None
    assert not record.kept
    assert record.current == {"a": 2, "b": 1}
    assert record.replicas == {"a": 3, "b": 1}
    assert record.weights == {"a": 0.75, "b": 0.25}
    assert actuator.writes == [("scale", "vllm-a", 3), ("weights", {"svc-a": 750, "svc-b": 250})]
    assert record.actions == ("scale llm/vllm-a 2->3",
                              "weights llm/vllm {'svc-a': 500, 'svc-b': 500}->"
                              "{'svc-a': 750, 'svc-b': 250}")
    assert [(e["reason"], e["involvedObject"]["kind"], e["involvedObject"]["name"])
            for e in core.events] == [("ScaledUp", "Deployment", "vllm-a"),
                                      ("WeightsChanged", "HTTPRoute", "vllm")]
    m = loop.metrics
    assert m.value("rlscale_decisions_total", pool="a", reason="Scripted") == 1
    assert m.value("rlscale_desired_replicas", pool="a") == 3
    assert m.value("rlscale_routing_weight", pool="b") == 0.25
    assert m.value("rlscale_is_leader") == 1
    # the same state again: nothing to write
    loop2, actuator2 = make_loop(config, lambda t: collected(t, desired=(3, 1),
                                                             weights={"a": 3, "b": 1}),
                                 policy=Wants((3, 1), (3.0, 1.0)))
    assert loop2.run_once(60.0).actions == ()
    assert actuator2.writes == []


def test_the_observation_is_the_builders_and_rates_come_from_counter_deltas() -> None:
    config = parse_config(config_data())
    policy = Wants()
    loop, _ = make_loop(config, collected, policy=policy)
    for t in (30.0, 60.0, 90.0):
        loop.run_once(t)
    builder = ObservationBuilder(config.observation_config())
    assert np.array_equal(policy.seen[-1].vector, builder.observe(loop.lookback.history))
    a = policy.seen[-1].pools[0]
    assert a.arrival_rps == pytest.approx(2 * 20 / 30)  # two pods, 20 more successes each
    assert a.ready_replicas == 2
    assert policy.seen[-1].desired == (2, 1)


# ---------------------------------------------------------------------------------- refusing
def _stale(t: float) -> CollectedMetrics:
    return collected(t, problems=[Problem("StaleMetrics", "stale", "every pod is stale",
                                          pool="a")])


def _source_down(t: float) -> CollectedMetrics:
    if t <= 30:
        return collected(t)
    return CollectedMetrics(t, {}, (), None, None, tuple(Problem(
        "DeploymentUnavailable", "missing", "HTTP 503", pool=p) for p in POOLS))


@pytest.mark.parametrize(("script", "times", "reasons"), [
    (_stale, [30.0], ["StaleMetrics"]),
    (lambda t: collected(t, age_s=120.0), [30.0], ["StaleMetrics"]),
    (_source_down, [30.0, 60.0, 90.0, 150.0],
     ["Scripted", "MissingMetrics", "MissingMetrics", "StaleMetrics"]),
    (lambda t: collected(t, problems=[Problem("NoPodMetrics", "missing", "none", pool="b")]),
     [30.0], ["MissingMetrics"]),
])
def test_stale_or_missing_metrics_keep_the_current_state_and_write_nothing(
        script: Callable[[float], CollectedMetrics], times: list[float],
        reasons: list[str]) -> None:
    config = parse_config(config_data())
    loop, actuator = make_loop(config, script, policy=Wants((4, 3), (1.0, 0.0)))
    records = [loop.run_once(t) for t in times]
    assert [r.reason for r in records] == reasons
    for record in records:
        if record.reason != "Scripted":
            assert record.kept
            assert record.actions == ()
            assert record.policy == "none"
            assert record.replicas == record.current
    # only the first, fresh iteration of the third case writes
    assert len(actuator.writes) == (3 if reasons[0] == "Scripted" else 0)
    if len(records) > 1:
        assert "DeploymentUnavailable[a]: HTTP 503" in records[1].message
    last = records[-1]
    assert loop.metrics.value("rlscale_fallbacks_total", reason=last.reason) >= 1
    if last.reason == "StaleMetrics" and len(times) > 1:
        assert last.staleness_s == 120.0
        assert "120 s old" in last.message


def test_shadow_mode_and_followers_never_write() -> None:
    shadow = parse_config(config_data(mode="shadow"))
    loop, actuator = make_loop(shadow, collected, policy=Wants((4, 0), (0.0, 1.0)))
    record = loop.run_once(30.0)
    assert record.replicas == {"a": 4, "b": 0}
    assert actuator.writes == []
    assert record.actions[0] == "would scale llm/vllm-a 2->4 (shadow mode)"
    assert len(record.actions) == 3
    follower, actuator = make_loop(parse_config(config_data()), collected, leader=False,
                                   policy=Wants((4, 0), (0.0, 1.0)))
    record = follower.run_once(30.0)
    assert actuator.writes == []
    assert not record.leader
    assert all(a.endswith("(not the leader)") for a in record.actions)
    assert follower.metrics.value("rlscale_is_leader") == 0


@pytest.mark.parametrize(("wanted", "written", "rules"), [
    ((100, 100), [("scale", "vllm-a", 4), ("scale", "vllm-b", 3)],
     ["TooManyReplicas:a", "TooManyReplicas:b"]),
    ((0, 0), [("scale", "vllm-a", 1), ("scale", "vllm-b", 0)], ["TooFewReplicas:a"]),
    ((7, 1), [("scale", "vllm-a", 4)], ["TooManyReplicas:a"]),
])
def test_the_shield_never_lets_replicas_leave_min_max(
        wanted: tuple[int, int], written: list[tuple[Any, ...]], rules: list[str]) -> None:
    loop, actuator = make_loop(parse_config(config_data()), collected,
                               policy=Wants(wanted, (1.0, 1.0)))
    record = loop.run_once(30.0)
    assert [w for w in actuator.writes if w[0] == "scale"] == written
    assert list(record.interventions) == rules
    assert record.reason == rules[0].split(":")[0]
    assert 1 <= record.replicas["a"] <= 4
    assert 0 <= record.replicas["b"] <= 3
    rule = rules[0].split(":")[0]
    assert loop.metrics.value("rlscale_shield_interventions_total", rule=rule) == sum(
        r.startswith(rule) for r in rules)


def test_partial_metrics_use_the_fallback_without_scaling_down() -> None:
    config = parse_config(config_data())
    problem = Problem("ScrapeTimeout", "partial", "no answer", pool="a", pod="a-1")
    loop, actuator = make_loop(config, lambda t: collected(t, problems=[problem]),
                               policy=Wants((4, 3)))
    record = loop.run_once(30.0)
    # the fallback (static 1, 0) would scale both pools down: not on partial data
    assert record.reason == "PartialMetrics"
    assert record.policy == "static"
    assert record.replicas == {"a": 2, "b": 1}
    assert "NoScaleDownOnPartialMetrics:a" in record.interventions
    assert not any(w[0] == "scale" for w in actuator.writes)


def test_a_pod_read_again_after_a_failed_scrape_does_not_look_like_a_burst() -> None:
    def script(t: float) -> CollectedMetrics:
        pods = [sample("a-0", "a", success=int(t)), sample("b-0", "b", success=int(t))]
        late = sample("a-1", "a", success=5000 + int(t))  # served for a long time already
        if t == 30.0:
            return collected(t, desired=(2, 1), samples=pods, unsampled=[("a-1", "a")],
                             problems=[Problem("ScrapeFailed", "partial", "x", "a", "a-1")])
        return collected(t, desired=(2, 1), samples=[*pods, late])

    policy = Wants()
    loop, _ = make_loop(parse_config(config_data()), script, policy=policy)
    first = loop.run_once(30.0)
    second = loop.run_once(60.0)
    assert first.reason == "PartialMetrics"
    assert second.reason == "PartialMetrics"
    assert any("BackfilledPods" in p for p in second.problems)
    assert [p.pod for p in loop.lookback.history[0].pods] == ["a-0", "b-0", "a-1"]
    third = loop.run_once(90.0)
    assert third.reason == "Scripted"
    arrival = policy.seen[-1].pools[0].arrival_rps
    assert arrival == pytest.approx(2 * 30 / 30)  # a-0 and a-1: 30 successes each


def test_a_pod_that_was_starting_is_not_backfilled_once_ready() -> None:
    def script(t: float) -> CollectedMetrics:
        pods = [sample("a-0", "a", success=int(t)), sample("b-0", "b", success=int(t))]
        result = collected(t, desired=(2, 1), samples=[*pods, sample("a-1", "a", success=3)]
                           if t > 30.0 else pods)
        if t == 30.0:  # a-1 is running but not ready: its scrape was refused (degraded)
            starting = PodInfo("a-1", "a", "10.0.0.9", "Running", False, False, True)
            state = result.pools["a"]
            result = replace(result, pools={**result.pools, "a": replace(
                state, ready=1, starting=1, pods=(*state.pods, starting))},
                problems=(Problem("ScrapeFailed", "degraded", "x", "a", "a-1"),))
        return result

    loop, _ = make_loop(parse_config(config_data()), script, policy=Wants())
    first = loop.run_once(30.0)
    second = loop.run_once(60.0)
    assert first.reason == "Scripted"
    assert second.reason == "Scripted"
    assert not any("BackfilledPods" in p for p in second.problems)


def test_a_policy_that_raises_is_replaced_by_the_fallback() -> None:
    loop, _ = make_loop(parse_config(config_data()), collected,
                        policy=Wants(error=RuntimeError("boom")))
    record = loop.run_once(30.0)
    assert record.reason == "PolicyError"
    assert record.policy == "static"
    assert record.replicas == {"a": 1, "b": 0}
    assert loop.metrics.value("rlscale_fallbacks_total", reason="PolicyError") == 1


def test_when_even_the_fallback_fails_nothing_is_written() -> None:
    config = parse_config(config_data())
    setup = build_policy_setup(config)
    assert setup.shield is not None
    setup.shield.fallback = Wants(error=ValueError("fallback broke"))
    problem = Problem("ScrapeTimeout", "partial", "no answer", pool="a", pod="a-1")
    loop, actuator = make_loop(config, lambda t: collected(t, problems=[problem]),
                               setup=setup, policy=Wants((4, 3)))
    record = loop.run_once(30.0)
    assert record.reason == "PolicyError"
    assert record.kept
    assert actuator.writes == []
    assert "fallback broke" in record.message


# ---------------------------------------------------------------------------------- bundles
def _bundle(path: Path, config: ControllerConfig, seen: float) -> Path:
    observation = config.observation_config()
    size = ObservationBuilder(observation).size
    spec = ActionSpec(POOLS, 2, 5)
    rng = np.random.default_rng(0)
    sizes = [size, 16, sum(spec.nvec)]
    weights = [rng.normal(0, 0.5, (sizes[1], sizes[0])), rng.normal(0, 0.1, sizes[1]),
               rng.normal(0, 0.5, (sizes[2], sizes[1])), rng.normal(0, 0.1, sizes[2])]
    return save_bundle(path, ActorNetwork(weights, "tanh"), BundleSpec(
        PolicyContext(observation, (1, 0), 30.0), spec, np.full(size, -seen),
        np.full(size, seen)))


def _bundle_config(path: Path, facts: bool = True) -> ControllerConfig:
    data = config_data(policy={"bundle": str(path)})
    if not facts:
        del data["slo"]
        for pool in data["pools"]:
            for key in ("gpu_type", "gpus_per_replica", "max_num_seqs",
                        "price_per_replica_hour", "capacity_rps", "gpu_inventory"):
                del pool[key]
    return parse_config(data)


@pytest.mark.parametrize(("seen", "reason", "policy"), [
    (20.0, None, "ppo"), (0.0, "FallbackOutOfRange", "static")])
def test_a_bundle_decides_unless_the_observation_leaves_its_training_range(
        tmp_path: Path, seen: float, reason: str | None, policy: str) -> None:
    config = _bundle_config(tmp_path / "ppo")
    _bundle(tmp_path / "ppo", config, seen)
    setup = build_policy_setup(config)
    assert setup.load_error is None
    assert setup.name == "ppo"
    assert setup.warnings == ()
    loop, _ = make_loop(config, collected, setup=setup)
    record = loop.run_once(30.0)
    assert record.fallback_reason == reason
    assert record.policy == policy


def test_the_slo_guard_guards_a_bundle_and_not_a_heuristic(tmp_path: Path) -> None:
    config = _bundle_config(tmp_path / "ppo")
    _bundle(tmp_path / "ppo", config, 20.0)
    guarded = build_policy_setup(config).shield
    assert guarded is not None
    assert guarded.guard is not None
    assert guarded.guard.config.enter == config.shield.slo_guard.enter == 0.9
    heuristic = build_policy_setup(parse_config(config_data())).shield
    assert heuristic is not None
    assert heuristic.fallback is not None
    assert heuristic.guard is None


@pytest.mark.parametrize("facts", [True, False])
def test_a_corrupt_bundle_runs_the_fallback(tmp_path: Path, facts: bool,
                                            caplog: pytest.LogCaptureFixture) -> None:
    config = _bundle_config(tmp_path / "ppo", facts=facts)
    _bundle(tmp_path / "ppo", parse_config(config_data()), 20.0)
    weights = tmp_path / "ppo" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level(logging.ERROR, logger="rlscale.controller"):
        setup = build_policy_setup(config)
    assert setup.load_error is not None
    assert "truncated or corrupt" in setup.load_error
    assert "cannot load the policy bundle" in caplog.text
    loop, actuator = make_loop(config, collected, setup=setup)
    record = loop.run_once(30.0)
    assert record.reason == "BundleLoadFailed"
    if facts:  # the fallback heuristic decides on the config's facts
        assert record.policy == "static"
        assert record.replicas == {"a": 1, "b": 0}
        assert ("scale", "vllm-a", 1) in actuator.writes
    else:  # nothing can decide: keep the current state
        assert record.kept
        assert record.replicas == record.current
        assert actuator.writes == []
    assert loop.metrics.value("rlscale_fallbacks_total", reason="BundleLoadFailed") == 1


# ---------------------------------------------------------------------------------- reporting
def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_health_endpoints_and_metrics() -> None:
    loop, _ = make_loop(parse_config(config_data()), collected, policy=Wants())
    server = HealthServer(loop.metrics, loop.ready, address="127.0.0.1", port=0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(base + "/healthz") == (200, "ok\n")
        status, text = _get(base + "/readyz")
        assert status == 503
        assert "no control iteration" in text
        loop.clock = lambda: 40.0
        loop.run_once(30.0)
        assert _get(base + "/readyz") == (200, "ok\n")
        status, text = _get(base + "/metrics")
        assert status == 200
        for name in ("rlscale_decisions_total", "rlscale_desired_replicas",
                     "rlscale_routing_weight", "rlscale_loop_duration_seconds_bucket",
                     "rlscale_metrics_staleness_seconds", "rlscale_is_leader"):
            assert name in text
        assert _get(base + "/nothing")[0] == 404
        loop.clock = lambda: 1000.0
        assert _get(base + "/readyz")[0] == 503
    finally:
        server.stop()


def test_one_json_log_line_per_decision(caplog: pytest.LogCaptureFixture) -> None:
    loop, _ = make_loop(parse_config(config_data()), _stale, policy=Wants())
    with caplog.at_level(logging.INFO, logger="rlscale.controller"):
        record = loop.run_once(30.0)
    lines = [JsonFormatter().format(r) for r in caplog.records
             if getattr(r, "fields", {}).get("event") == "decision"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["reason"] == "StaleMetrics" == record.reason
    assert entry["level"] == "warning"
    assert entry["replicas"] == {"a": 2, "b": 1}
    assert entry["kept"] is True
    assert entry["message"].startswith("decision StaleMetrics: keeping the current state")


def test_the_text_log_format_is_one_readable_line_with_the_same_fields(
        caplog: pytest.LogCaptureFixture) -> None:
    loop, _ = make_loop(parse_config(config_data()), _stale, policy=Wants())
    with caplog.at_level(logging.INFO, logger="rlscale.controller"):
        loop.run_once(30.0)
    record = next(r for r in caplog.records if getattr(r, "fields", {}).get("event") == "decision")
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert not line.startswith("{")
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3}Z WARNING decision StaleMetrics: keeping", line), line
    assert ' replicas={"a":2,"b":1}' in line
    assert " kept=true" in line


@pytest.mark.parametrize(("tty", "chosen", "wanted"), [
    (True, "auto", TextFormatter), (False, "auto", JsonFormatter),
    (True, "json", JsonFormatter), (False, "text", TextFormatter)])
def test_auto_log_format_is_text_on_a_terminal_json_elsewhere(
        tty: bool, chosen: Any, wanted: type) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert type(formatter_for(chosen, Stream())) is wanted


def test_decision_record_to_dict_is_json() -> None:
    record = DecisionRecord(0.0, "act", True, "StaleMetrics", "none", "StaleMetrics", {}, {},
                            {})
    assert json.loads(json.dumps(record.to_dict()))["staleness_s"] is None


def test_events_that_cannot_be_recorded_are_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    core = FakeCore()
    core.fail["create_namespaced_event"] = [403]
    recorder = EventRecorder(core, instance="c-0", now=lambda: 0.0)
    assert not recorder.record(namespace="llm", kind="Deployment", name="vllm-a",
                               reason="ScaledUp", message="2->3")
    assert "cannot record event ScaledUp" in caplog.text


def test_cli_once_with_a_corrupt_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    import rlscale.controller.cli as cli

    bundle = tmp_path / "ppo"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{not json")
    (bundle / "weights.npz").write_bytes(b"")
    data = config_data(policy={"bundle": str(bundle)}, mode="shadow")
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    fake = clients(FakeApps(deployment("vllm-a", replicas=2), deployment("vllm-b", replicas=1)),
                   FakeCore(), FakeCustom(httproute({"svc-a": 1, "svc-b": 1})))
    monkeypatch.setattr(cli, "load_clients", lambda _path: fake)
    monkeypatch.setattr(cli, "configure_logging", lambda level, log_format: None)
    assert cli.main(["--config", str(path), "--once", "--mode", "act"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "BundleLoadFailed"
    assert out["policy"] == "static"
    assert out["mode"] == "act"
    assert out["current"] == {"a": 2, "b": 1}
    assert fake.apps.deployments["llm", "vllm-a"].spec.replicas == 1  # the fallback acted


SERVE = """
import json, os, signal, sys, threading, time, urllib.request
sys.path.insert(0, {tests!r})
import controller_fakes as f
import rlscale.controller.cli as cli

leases = f.FakeLeases()
apps = f.FakeApps(f.deployment("vllm-a", replicas=2), f.deployment("vllm-b", replicas=1))
fake = f.clients(apps, f.FakeCore(), f.FakeCustom(f.httproute({{"svc-a": 1, "svc-b": 1}})),
                 leases)
cli.load_clients = lambda path: fake
seen = {{}}

def probe():
    base = "http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            seen["healthz"] = urllib.request.urlopen(base + "/healthz").status
            break
        except OSError:
            time.sleep(0.05)
    for _ in range(100):
        seen["metrics"] = urllib.request.urlopen(base + "/metrics").read().decode()
        text = seen["metrics"]
        if "rlscale_is_leader 1.0" in text and "rlscale_decisions_total" in text:
            break
        time.sleep(0.05)
    seen["holder"] = leases.holder("rlscale-controller")
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
code = cli.main(["--config", {config!r}, "--log-level", "WARNING"])
print(json.dumps({{"code": code, "healthz": seen.get("healthz"), "holder": seen.get("holder"),
                  "after": leases.holder("rlscale-controller"),
                  "leader_metric": "rlscale_is_leader 1.0" in seen.get("metrics", "")}}))
"""


@pytest.mark.slow
def test_serve_mode_answers_probes_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import socket

    import yaml

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = config_data(mode="act", leader_election={"identity": "c-0"},
                       http={"address": "127.0.0.1", "port": port})
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    script = SERVE.format(tests=str(Path(__file__).parent), port=port, config=str(path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"code": 0, "healthz": 200, "holder": "c-0", "after": None,
                   "leader_metric": True}


def test_the_controller_imports_no_torch_gymnasium_or_simulator() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import rlscale.controller, rlscale.controller.__main__\n"
        "for m in pkgutil.iter_modules(rlscale.controller.__path__):\n"
        "    importlib.import_module('rlscale.controller.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'stable_baselines3', 'sb3_contrib', 'gymnasium') "
        "or m.startswith(('rlscale.sim', 'rlscale.envs')))\n"
        "assert not bad, bad\n"
        "assert 'rlscale.controller.cli' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
