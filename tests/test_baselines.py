"""Heuristic baselines against worked examples from the documentation of the autoscalers they
follow (Kubernetes HPA, Knative KPA, KEDA, Dynamo's planner), then a short run of each in the
real environment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from rlscale.agents.baselines import BASELINES, knobs_of, make_baseline
from rlscale.agents.baselines._common import ready_samples
from rlscale.agents.baselines.hpa_core import (
    HpaBehavior,
    ScalingPolicy,
    ScalingRules,
    external_per_pod_replicas,
    plain_metric_replicas,
)
from rlscale.agents.policy import Decision, Policy, PolicyContext, PolicyInput
from rlscale.envs import LLMClusterEnv
from rlscale.metrics import (
    ClusterSnapshot,
    HistogramData,
    ObservationConfig,
    PodSample,
    PoolInfo,
    PoolStatus,
)
from rlscale.metrics.intervals import PoolInterval

_HIST = HistogramData((1.0,), (0, 0), 0.0)
Pod = tuple[int, int, float]  # running, waiting, KV-cache usage


# ---------------------------------------------------------------------------------- helpers
def info(name: str = "pool", *, gpu: str = "A100", max_replicas: int = 16, capacity: float = 5.0,
         price: float = 3.0, gpus: int = 1) -> PoolInfo:
    return PoolInfo(name=name, gpu_type=gpu, gpus_per_replica=gpus, max_replicas=max_replicas,
                    max_num_seqs=256, price_per_replica_hour=price, capacity_rps=capacity,
                    gpu_inventory=64)


def context(*pools: PoolInfo, mins: Sequence[int] | None = None,
            interval_s: float = 15.0) -> PolicyContext:
    pools = pools or (info(),)
    return PolicyContext(ObservationConfig(pools, slo_ttft_s=2.0, slo_itl_s=0.15),
                         tuple(mins) if mins is not None else (1,) * len(pools), interval_s)


class State:
    """One pool at decision time: replica counts, per-pod samples, arrival rate."""

    def __init__(self, ready: int, *, pods: Sequence[Pod] | None = None, running: int = 0,
                 waiting: int = 0, kv: float = 0.0, starting: int = 0, pending: int = 0,
                 draining: int = 0, arrival: float = 0.0) -> None:
        self.ready, self.starting, self.pending, self.draining = ready, starting, pending, draining
        self.pods = list(pods) if pods is not None else [(running, waiting, kv)] * ready
        self.arrival = arrival


def observe(ctx: PolicyContext, t: float, states: Sequence[State], desired: Sequence[int],
            free: dict[str, int] | None = None) -> PolicyInput:
    statuses: list[PoolStatus] = []
    samples: list[PodSample] = []
    intervals: list[PoolInterval] = []
    for pool, s in zip(ctx.observation.pools, states, strict=True):
        statuses.append(PoolStatus(pool.name, desired[len(statuses)], s.ready, s.starting,
                                   s.pending, s.draining, 1.0, pool.gpu_type,
                                   pool.gpus_per_replica))
        pods = [PodSample(f"{pool.name}-{k}", pool.name, r, w, kv, 0, 0, 0, 0, _HIST, _HIST,
                          _HIST, _HIST) for k, (r, w, kv) in enumerate(s.pods)]
        samples += pods
        per = max(s.ready, 1)
        intervals.append(PoolInterval(
            pool=pool.name, arrival_rps=s.arrival, prompt_tokens_per_s=0.0,
            generation_tokens_per_s=0.0, completions_rps=s.arrival,
            running_per_replica=sum(p[0] for p in s.pods) / per,
            waiting_per_replica=sum(p[1] for p in s.pods) / per,
            kv_cache_usage=sum(p[2] for p in s.pods) / max(len(s.pods), 1),
            ttft_p50_s=math.nan, ttft_p90_s=math.nan, ttft_p99_s=math.nan, itl_p50_s=math.nan,
            itl_p90_s=math.nan, itl_p99_s=math.nan, ttft_slo_violation=0.0,
            itl_slo_violation=0.0, observed_requests=0, ready_replicas=s.ready,
            starting_replicas=s.starting, pending_replicas=s.pending,
            draining_replicas=s.draining, routing_share=0.0))
    gpus = free if free is not None else {p.gpu_type: 64 for p in ctx.observation.pools}
    snapshot = ClusterSnapshot(t, tuple(statuses), tuple(samples), gpus)
    return PolicyInput(t, np.zeros(1, np.float32), tuple(intervals), snapshot, tuple(desired))


def run(policy: Policy, ctx: PolicyContext, steps: Sequence[tuple[float, State, int]]
        ) -> list[Decision]:
    """Decisions of a one-pool policy over (time, state, current replicas) steps."""
    return [policy.decide(observe(ctx, t, [s], [d])) for t, s, d in steps]


# ---------------------------------------------------------------------------------- HPA
@pytest.mark.parametrize(("values", "missing", "unready", "current", "target", "expected"), [
    # kubernetes.io HPA "Algorithm details": 200m against 100m doubles, 50m halves.
    ([0.2, 0.2], 0, 0, 2, 0.1, 4),
    ([0.05, 0.05, 0.05, 0.05], 0, 0, 4, 0.1, 2),
    # ratio 1.05 is within the 0.1 tolerance: no change.
    ([0.105, 0.105, 0.105], 0, 0, 3, 0.1, 3),
    # unready pods count as 0 on scale-up (dampening it) ...
    ([0.3, 0.3], 0, 1, 3, 0.1, 6),
    ([0.2, 0.2], 0, 2, 4, 0.1, 4),
    # ... and are ignored on scale-down.
    ([0.05, 0.05], 0, 2, 4, 0.1, 1),
    # missing metrics: 0 on scale-up, the target on scale-down.
    ([0.3, 0.3], 1, 0, 3, 0.1, 6),
    ([0.05, 0.05], 1, 0, 3, 0.1, 2),
    # ... and no change if they flip the direction or land within the tolerance.
    ([0.08], 2, 0, 3, 0.1, 3),
    ([0.12], 3, 0, 4, 0.1, 4),
    # running requests per pod (integers), target 40: 3 pods at 100 -> ceil(3 x 2.5) = 8.
    ([100, 100, 100], 0, 0, 3, 40, 8),
])
def test_hpa_replica_calculator_follows_the_documented_algorithm(
        values: list[float], missing: int, unready: int, current: int, target: float,
        expected: int) -> None:
    result = plain_metric_replicas(values, missing, unready, current, target)
    assert result is not None
    assert result.replicas == expected


def test_hpa_replica_calculator_without_metrics_returns_none() -> None:
    assert plain_metric_replicas([], 2, 1, 3, 0.5) is None


@pytest.mark.parametrize(("usages", "expected", "reason"), [
    ([0.8, 0.8], 4, "ScaleUp"),
    ([0.2, 0.2], 1, "ScaleDown"),
    ([0.42, 0.42], 2, "WithinTolerance"),
])
def test_hpa_policy_scales_on_mean_kv_cache_usage(usages: list[float], expected: int,
                                                  reason: str) -> None:
    ctx = context()
    hpa = make_baseline("hpa", ctx, target=0.4, stabilization_window_s=0)
    pods = [(0, 0, u) for u in usages]
    decision = hpa.decide(observe(ctx, 0.0, [State(2, pods=pods)], [2]))
    assert (decision.replicas, decision.reason) == ((expected,), reason)
    assert "ratio" in decision.message
    assert decision.valid


def test_hpa_scale_down_stabilization_keeps_the_highest_recommendation_for_300s() -> None:
    ctx = context()
    hpa = make_baseline("hpa", ctx, target=0.5)
    busy, quiet = State(4, kv=0.5), State(4, kv=0.25)
    first = hpa.decide(observe(ctx, 0.0, [busy], [4]))
    assert (first.replicas, first.reason) == ((4,), "WithinTolerance")
    dip = [hpa.decide(observe(ctx, t, [quiet], [4])) for t in np.arange(15.0, 300.0, 15.0)]
    assert all(d.replicas == (4,) and d.reason == "ScaleDownStabilized" for d in dip)
    after = hpa.decide(observe(ctx, 300.0, [quiet], [4]))
    assert (after.replicas, after.reason) == ((2,), "ScaleDown")


def test_a_new_hpa_does_not_scale_down_within_its_first_window() -> None:
    ctx = context()
    hpa = make_baseline("hpa", ctx, target=0.5)
    assert hpa.decide(observe(ctx, 0.0, [State(4, kv=0.1)], [4])).replicas == (4,)
    assert hpa.decide(observe(ctx, 301.0, [State(4, kv=0.1)], [4])).replicas == (1,)


def test_hpa_scale_up_limit_is_max_of_100_percent_and_4_pods_per_15s() -> None:
    ctx = context(info(max_replicas=40))
    hpa = make_baseline("hpa", ctx, target=0.1)
    hot = State(2, kv=0.8)  # ratio 8: 16 replicas wanted
    first = hpa.decide(observe(ctx, 0.0, [hot], [2]))
    assert (first.replicas, first.reason) == ((6,), "ScaleUpLimit")  # max(2 x 2, 2 + 4)
    # 10 s later the +4 is still inside the 15 s period: the period started at 2 replicas.
    held = hpa.decide(observe(ctx, 10.0, [State(2, kv=0.8, starting=4)], [6]))
    assert (held.replicas, held.reason) == ((6,), "ScaleUpLimit")
    # once the period has passed, it may double again: max(6 x 2, 6 + 4) = 12.
    later = hpa.decide(observe(ctx, 15.0, [State(6, kv=0.8)], [6]))
    assert (later.replicas, later.reason) == ((12,), "ScaleUpLimit")
    assert hpa.decide(observe(ctx, 45.0, [State(12, kv=0.8)], [12])).replicas == (24,)


def test_hpa_scale_down_policies_from_the_docs_example() -> None:
    # kubernetes.io "Configurable scaling behavior": Pods 4 / 60 s and Percent 10 / 60 s,
    # the larger change wins: 80 -> 72, then (a period later) 72 -> 64.
    behavior = HpaBehavior(scale_down=ScalingRules(0.0, "Max", (
        ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60))))
    assert behavior.normalize(0.0, 80, 10, 1, 100) == (72, "ScaleDownLimit")
    behavior.record(0.0, 80, 72)
    assert behavior.normalize(30.0, 72, 10, 1, 100) == (72, "ScaleDownLimit")
    assert behavior.normalize(61.0, 72, 10, 1, 100) == (64, "ScaleDownLimit")


@pytest.mark.parametrize(("current", "pods", "expected", "reason"), [
    (20, [(0, 0, 0.5)] * 4, 16, "TooManyReplicas"),
    (4, [(0, 0, 0.99)] * 4, 8, "ScaleUp"),
    (16, [(0, 0, 0.99)] * 16, 16, "TooManyReplicas"),
    (1, [(0, 0, 0.0)], 1, "TooFewReplicas"),
])
def test_hpa_stays_within_min_and_max_replicas(current: int, pods: list[Pod], expected: int,
                                               reason: str) -> None:
    ctx = context()
    hpa = make_baseline("hpa", ctx, target=0.5, stabilization_window_s=0)
    decision = hpa.decide(observe(ctx, 0.0, [State(len(pods), pods=pods)], [current]))
    assert (decision.replicas, decision.reason) == ((expected,), reason)


def test_hpa_without_metrics_is_invalid() -> None:
    ctx = context()
    hpa = make_baseline("hpa", ctx)
    decision = hpa.decide(observe(ctx, 0.0, [State(0, starting=3)], [3]))
    assert not decision.valid
    assert decision.reason == "NoMetrics"
    assert decision.replicas == (3,)


def test_hpa_running_metric_and_draining_pods() -> None:
    ctx = context()
    hpa = make_baseline("hpa-running", ctx, stabilization_window_s=0)
    # 2 ready pods at 80 running plus a draining pod finishing 5: the draining one is dropped.
    state = State(2, pods=[(80, 0, 0.0), (5, 0, 0.0), (80, 0, 0.0)], draining=1)
    observed = observe(ctx, 0.0, [state], [2])
    samples, missing = ready_samples(observed.snapshot, observed.pools[0])
    assert sorted(s.num_requests_running for s in samples) == [80, 80]
    assert missing == 0
    assert hpa.decide(observe(ctx, 0.0, [state], [2])).replicas == (4,)  # ceil(2 x 80/40)


# ---------------------------------------------------------------------------------- KPA
def test_kpa_enters_panic_holds_and_leaves_after_a_calm_stable_window() -> None:
    ctx = context()
    kpa = make_baseline("kpa", ctx, target=100)  # 70 requests per pod at 70 % utilization
    calm = run(kpa, ctx, [(0.0, State(1, running=50), 1)])
    assert (calm[0].replicas, calm[0].reason) == ((1,), "Stable")
    # the 6 s panic window sees 150 in flight: ceil(150/70) = 3 >= 2 x 1 ready -> panic.
    burst = run(kpa, ctx, [(15.0, State(1, running=120, waiting=30), 1)])
    assert (burst[0].replicas, burst[0].reason) == ((3,), "Panic")
    # while panicking it never scales down, even with nothing in flight ...
    quiet = run(kpa, ctx, [(t, State(3), 3) for t in (30.0, 45.0, 60.0, 75.0)])
    assert all(d.replicas == (3,) and d.reason == "Panic" for d in quiet)
    # ... and leaves panic once the condition has been off for a stable window (60 s).
    after = run(kpa, ctx, [(90.0, State(3), 3)])
    assert (after[0].replicas, after[0].reason) == ((1,), "ScaleDown")  # floor(3 / 2) = 1


def test_kpa_stable_window_averages_and_scale_down_rate() -> None:
    ctx = context()
    kpa = make_baseline("kpa", ctx, target=10, target_utilization=1.0)
    # stable average of 40 and 80 per pod over 1 pod: 60 -> 6 pods; panic 80 -> 8 (panic).
    decisions = run(kpa, ctx, [(0.0, State(1, running=40), 1), (30.0, State(1, running=80), 1)])
    assert decisions[1].replicas == (8,)
    assert decisions[1].reason == "Panic"
    kpa2 = make_baseline("kpa", ctx, target=10, target_utilization=1.0)
    # starts in panic holding 8 ready pods for a stable window; afterwards at most halves.
    held = run(kpa2, ctx, [(0.0, State(8), 8), (30.0, State(8), 8)])
    assert [d.replicas for d in held] == [(8,), (8,)]
    down = run(kpa2, ctx, [(61.0, State(8), 8), (91.0, State(4), 4)])
    assert [d.replicas for d in down] == [(4,), (2,)]


def test_kpa_scales_to_min_replicas_zero_when_idle() -> None:
    ctx = context(mins=[0])
    kpa = make_baseline("kpa", ctx)
    decisions = run(kpa, ctx, [(0.0, State(1), 1), (30.0, State(1), 1)])
    assert decisions[-1].replicas == (0,)


# ---------------------------------------------------------------------------------- KEDA
@pytest.mark.parametrize(("total", "status", "threshold", "expected"), [
    (23, 2, 5, 5),   # ceil(23 / 5)
    (10, 2, 5, 2),   # exactly on target: no change
    (10.5, 2, 5, 2),  # ratio 1.05, within the tolerance
    (0, 3, 5, 0),    # the HPA's minReplicas (>= 1) applies afterwards
    (7, 0, 5, 2),
])
def test_keda_average_value_math(total: float, status: int, threshold: float,
                                 expected: int) -> None:
    assert external_per_pod_replicas(total, status, threshold).replicas == expected


def test_keda_scales_on_total_waiting_over_threshold() -> None:
    ctx = context()
    keda = make_baseline("keda", ctx, threshold=5)
    pods = [(200, 12, 0.5), (200, 11, 0.5)]
    decision = keda.decide(observe(ctx, 0.0, [State(2, pods=pods)], [2]))
    assert (decision.replicas, decision.reason) == ((5,), "ScaleUp")
    assert "23 waiting" in decision.message


def test_keda_cooldown_then_scale_to_zero_and_activation_from_zero() -> None:
    ctx = context(mins=[0])
    keda = make_baseline("keda", ctx, threshold=5, min_replica_count=0, cooldown_s=300)
    steps = [(0.0, State(2, waiting=3), 2), (150.0, State(2), 2), (299.0, State(2), 2)]
    assert [d.replicas for d in run(keda, ctx, steps)] == [(2,), (2,), (2,)]
    gone = run(keda, ctx, [(301.0, State(2), 2)])[0]
    assert (gone.replicas, gone.reason) == ((0,), "ScaleToZero")
    asleep = run(keda, ctx, [(330.0, State(0), 0)])[0]
    assert (asleep.replicas, asleep.reason) == ((0,), "Inactive")
    woken = run(keda, ctx, [(360.0, State(0, pods=[(0, 4, 0.0)]), 0)])[0]
    assert (woken.replicas, woken.reason) == ((1,), "ScaleFromZero")


def test_keda_min_replica_count_one_never_scales_to_zero() -> None:
    ctx = context(mins=[0])
    keda = make_baseline("keda", ctx)
    decisions = run(keda, ctx, [(0.0, State(3), 3), (400.0, State(3), 3)])
    assert decisions[-1].replicas == (1,)


def test_keda_activation_threshold_keeps_a_pool_at_zero() -> None:
    ctx = context(mins=[0])
    keda = make_baseline("keda", ctx, min_replica_count=0, activation_threshold=10)
    decision = run(keda, ctx, [(0.0, State(0, pods=[(0, 5, 0.0)]), 0)])[0]
    assert (decision.replicas, decision.reason) == ((0,), "Inactive")


# ---------------------------------------------------------------------------------- planner
def _three_pools(**free: int) -> tuple[PolicyContext, dict[str, int]]:
    pools = (info("pricey", gpu="H", capacity=10, price=10, max_replicas=8),
             info("cheap", gpu="L", capacity=10, price=1, max_replicas=2),
             info("mid", gpu="A", capacity=10, price=3, max_replicas=4))
    gpus = {"H": 8, "L": 1, "A": 4}  # the cheap pool's one ready replica holds an L GPU
    gpus.update(free)
    return context(*pools, mins=[0, 0, 0]), gpus


@pytest.mark.parametrize(("arrival", "free", "expected"), [
    (15.0, {}, (0, 2, 0)),       # the cheapest capacity first
    (35.0, {}, (0, 2, 2)),       # then the next cheapest
    (95.0, {}, (4, 2, 4)),       # up to max_replicas, then the expensive pool
    (35.0, {"L": 0}, (0, 1, 3)),  # only the GPUs that are free
    (500.0, {}, (8, 2, 4)),      # everything, capacity-limited
])
def test_planner_fills_cheapest_capacity_first_within_limits(
        arrival: float, free: dict[str, int], expected: tuple[int, ...]) -> None:
    ctx, gpus = _three_pools(**free)
    planner = make_baseline("planner", ctx, headroom=0.0)
    states = [State(0), State(1, arrival=arrival), State(0)]
    decision = planner.decide(observe(ctx, 0.0, states, [0, 1, 0], gpus))
    assert decision.replicas == expected
    assert decision.valid
    assert "req/s needed" in decision.message
    if arrival == 500.0:
        assert decision.reason == "CapacityLimited"


def test_planner_orders_pools_by_price_per_capacity_not_per_replica() -> None:
    ctx = context(info("big", gpu="H", capacity=10, price=4), info("small", gpu="L", capacity=1,
                                                                  price=1), mins=[0, 0])
    decision = make_baseline("planner", ctx, headroom=0.0).decide(
        observe(ctx, 0.0, [State(1, arrival=9.0), State(0)], [1, 0]))
    assert decision.replicas == (1, 0)


def test_planner_counts_starting_replicas_and_weights_ready_capacity() -> None:
    ctx = context(info("a", capacity=10), info("b", gpu="B", capacity=5), mins=[0, 0])
    planner = make_baseline("planner", ctx, headroom=0.0)
    states = [State(2, starting=2, arrival=40.0), State(0, starting=1)]
    decision = planner.decide(observe(ctx, 0.0, states, [4, 1], {"A100": 0, "B": 0}))
    assert decision.replicas == (4, 1)  # the 2 starting replicas are not provisioned again
    assert decision.reason == "ScaleDownDelayed"  # b is not needed, but only after a delay
    assert decision.weights == (20.0, 0.0)  # ready x capacity; 0 without ready replicas


def test_planner_adds_the_backlog_and_scales_down_gradually_after_a_delay() -> None:
    ctx = context(info(capacity=10), mins=[1])
    planner = make_baseline("planner", ctx, headroom=0.0, scale_down_delay_s=60,
                            backlog_drain_s=60)
    backlog = planner.decide(observe(ctx, 0.0, [State(4, waiting=150, arrival=30.0)], [4]))
    assert backlog.replicas == (4,)  # 30 req/s + 600 waiting / 60 s = 40 req/s
    steps = [(t, State(4, arrival=10.0), 4) for t in (15.0, 30.0, 45.0)]
    assert [d.reason for d in run(planner, ctx, steps)] == ["ScaleDownDelayed"] * 3
    down = run(planner, ctx, [(75.0, State(4, arrival=10.0), 4), (90.0, State(3, arrival=10.0), 3)])
    assert [d.replicas for d in down] == [(3,), (2,)]


@pytest.mark.parametrize(("forecast", "expected"), [("last", 3), ("ewma", 2), ("trend", 4)])
def test_planner_forecasts(forecast: str, expected: int) -> None:
    # rates 10 then 24 req/s, 15 s apart: last 24, EWMA(0.5) 17, linear trend 38 one interval on.
    ctx = context(info(capacity=10))
    planner = make_baseline("planner", ctx, headroom=0.0, forecast=forecast)
    run(planner, ctx, [(0.0, State(2, arrival=10.0), 2)])
    decision = run(planner, ctx, [(15.0, State(2, arrival=24.0), 2)])[0]
    assert decision.replicas == (expected,)


# ---------------------------------------------------------------------------------- static
@pytest.mark.parametrize(("knobs", "replicas", "weights"), [
    ({}, (16, 4), (80.0, 80.0)),
    ({"replicas": 3}, (3, 3), (15.0, 60.0)),
    ({"replicas": 8.0}, (8, 4), (40.0, 80.0)),
    ({"replicas": [0, 2]}, (1, 2), (5.0, 40.0)),
])
def test_static_replicas_and_capacity_weights(knobs: dict[str, Any], replicas: tuple[int, ...],
                                              weights: tuple[float, ...]) -> None:
    ctx = context(info("a", capacity=5), info("b", gpu="B", capacity=20, max_replicas=4))
    decision = make_baseline("static", ctx, **knobs).decide(
        observe(ctx, 0.0, [State(1), State(1)], [1, 1]))
    assert (decision.replicas, decision.weights) == (replicas, weights)


# ---------------------------------------------------------------------------------- registry
def test_registry_names_knobs_and_grids() -> None:
    assert set(BASELINES) == {"static", "hpa", "hpa-running", "kpa", "keda", "planner"}
    for name, cls in BASELINES.items():
        assert cls.TUNABLE in knobs_of(name)
        assert len(cls.TUNE_GRID) >= 3
        for value in cls.TUNE_GRID:
            assert make_baseline(name, context(), **{cls.TUNABLE: value}).name == name


@pytest.mark.parametrize(("name", "knobs", "match"), [
    ("hpx", {}, r"unknown baseline 'hpx'; valid: \['hpa'"),
    ("hpa", {"targt": 1}, r"unknown knob\(s\) \['targt'\]; valid: \['metric', 'target'"),
    ("hpa", {"metric": "cpu"}, "unknown metric 'cpu'"),
    ("planner", {"forecast": "arima"}, "unknown forecast 'arima'"),
    ("kpa", {"target": 0}, "target must be > 0"),
    ("static", {"replicas": 2.5}, "whole number"),
])
def test_make_baseline_rejects_unknown_names_knobs_and_values(name: str, knobs: dict[str, Any],
                                                              match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_baseline(name, context(), **knobs)


# ---------------------------------------------------------------------------------- env
def _episode(scenario: str, name: str) -> tuple[PolicyContext, list[Decision], list[int]]:
    env = LLMClusterEnv(scenario, overrides={"episode": {"duration_s": 600}})
    ctx = env.policy_context()
    policy = make_baseline(name, ctx)
    env.reset(seed=0)
    policy.reset()
    decisions = []
    start = list(env.policy_input().desired)
    for _ in range(20):
        decision = policy.decide(env.policy_input())
        env.step_decision(decision)
        decisions.append(decision)
    return ctx, decisions, start


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["single-pool", "hetero-3pool"])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_run_in_the_environment_within_limits(scenario: str, name: str) -> None:
    ctx, decisions, start = _episode(scenario, name)
    for decision in decisions:
        assert all(low <= r <= high for r, low, high in zip(
            decision.replicas, ctx.min_replicas, ctx.max_replicas, strict=True))
        assert decision.reason
        assert decision.message
        assert len(decision.weights) == ctx.pool_count
    assert any(list(d.replicas) != start for d in decisions), f"{name} never acted"
    if name == "hpa" and scenario == "single-pool":
        assert max(d.replicas[0] for d in decisions) > start[0]


@pytest.mark.slow
def test_baseline_decisions_are_deterministic_after_reset() -> None:
    assert _episode("hetero-3pool", "kpa")[1] == _episode("hetero-3pool", "kpa")[1]
