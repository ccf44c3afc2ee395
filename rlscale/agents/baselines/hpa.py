"""``hpa``: one Kubernetes HorizontalPodAutoscaler (autoscaling/v2) per pool, on a vLLM metric.

Each pool is scaled the way an HPA with a ``Pods`` metric and an ``AverageValue`` target scales
its Deployment (kubernetes/kubernetes ``pkg/controller/podautoscaler/replica_calculator.go`` and
``horizontal.go``; kubernetes.io "Horizontal Pod Autoscaling", sections "Algorithm details" and
"Configurable scaling behavior"), with the metric read per pod from vLLM's ``/metrics``:

* ``kv_cache_usage`` — ``vllm:kv_cache_usage_perc`` (fraction 0-1; AIBrix's and the vLLM
  production-stack's KV-cache examples),
* ``running`` — ``vllm:num_requests_running`` (requests; AIBrix / production-stack examples),
* ``waiting`` — ``vllm:num_requests_waiting`` (requests; production-stack's HPA tutorial).

``desired = ceil(ready pods × mean / target)`` unless ``|mean / target − 1| <= tolerance``;
starting and pending pods are unready (0 on scale-up), ready pods without a sample are missing
(0 on scale-up, the target on scale-down); then the 300 s scale-down stabilization window and
the default rate policies (up: max(100 %, 4 pods) per 15 s; down: 100 % per 15 s) over time-
stamped scale events. The HPA's ``minReplicas`` is ``max(min_replicas, 1)``: an HPA cannot go
below 1 without the alpha ``HPAScaleToZero`` gate, and a pool at 0 has no pod to report a
``Pods`` metric. A pool at 0 replicas (allowed by ``min_replicas`` 0) stays there
("ScalingDisabled", as the HPA does when ``spec.replicas`` is 0). Traffic is routed by ready
capacity (:func:`~rlscale.agents.baselines._common.capacity_weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rlscale.agents.baselines._common import (
    PerPoolBaseline,
    PoolResult,
    non_negative,
    per_pool,
    positive,
    ready_samples,
)
from rlscale.agents.baselines.hpa_core import (
    TOLERANCE,
    HpaBehavior,
    ScalingPolicy,
    ScalingRules,
    plain_metric_replicas,
)
from rlscale.agents.policy import PolicyContext, PolicyInput
from rlscale.metrics.snapshot import PodSample

METRICS: dict[str, Callable[[PodSample], float]] = {
    "kv_cache_usage": lambda s: s.kv_cache_usage_perc,
    "running": lambda s: float(s.num_requests_running),
    "waiting": lambda s: float(s.num_requests_waiting),
}
"""Per-pod metric by knob value."""

DEFAULT_TARGETS = {"kv_cache_usage": 0.6, "running": 40.0, "waiting": 5.0}
"""Default ``target`` per metric (fraction; requests per pod; requests per pod)."""

TUNE_GRIDS: dict[str, tuple[float, ...]] = {
    "kv_cache_usage": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "running": (8.0, 16.0, 24.0, 32.0, 40.0, 64.0, 96.0, 128.0, 192.0),
    "waiting": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
}
"""Candidate targets per metric."""


def behavior_rules(stabilization_window_s: float, scale_up_stabilization_s: float,
                   scale_up_percent: float, scale_up_pods: int, scale_down_percent: float,
                   policy_period_s: float) -> tuple[ScalingRules, ScalingRules]:
    """``spec.behavior`` scale-up and scale-down rules from the knobs (the defaults give the
    documented default behavior)."""
    up = ScalingRules(scale_up_stabilization_s, "Max", (
        ScalingPolicy("Percent", scale_up_percent, policy_period_s),
        ScalingPolicy("Pods", float(scale_up_pods), policy_period_s)))
    down = ScalingRules(stabilization_window_s, "Max", (
        ScalingPolicy("Percent", scale_down_percent, policy_period_s),))
    return up, down


class HorizontalPodAutoscaler(PerPoolBaseline):
    """Kubernetes HPA v2 per pool on a per-pod vLLM metric.

    Knobs:
        metric: "kv_cache_usage" (default), "running" or "waiting".
        target: per-pod ``AverageValue`` target (fraction for kv_cache_usage, requests
            otherwise), one number or one per pool; default 0.6 / 40 / 5 by metric.
        tolerance: no change while |ratio − 1| <= tolerance (default 0.1).
        stabilization_window_s: scale-down stabilization window (s, default 300).
        scale_up_stabilization_s: scale-up stabilization window (s, default 0).
        scale_up_percent / scale_up_pods: scale-up policies per period (default 100 %, 4 pods;
            the larger applies).
        scale_down_percent: scale-down policy per period (default 100 %).
        policy_period_s: period of every rate policy (s, default 15).
    """

    name = "hpa"
    DEFAULT_METRIC = "kv_cache_usage"
    TUNABLE: ClassVar[str] = "target"
    TUNE_GRID: ClassVar[tuple[float, ...]] = TUNE_GRIDS["kv_cache_usage"]

    def __init__(self, context: PolicyContext, *, metric: str | None = None,
                 target: float | Sequence[float] | None = None, tolerance: float = TOLERANCE,
                 stabilization_window_s: float = 300.0, scale_up_stabilization_s: float = 0.0,
                 scale_up_percent: float = 100.0, scale_up_pods: int = 4,
                 scale_down_percent: float = 100.0, policy_period_s: float = 15.0) -> None:
        metric = metric or self.DEFAULT_METRIC
        if metric not in METRICS:
            raise ValueError(f"{self.name}: unknown metric {metric!r}; valid: {sorted(METRICS)}")
        self.context = context
        self.metric = metric
        self.targets = per_pool(f"{self.name}: target",
                                DEFAULT_TARGETS[metric] if target is None else target,
                                context.pool_count)
        positive(self.name, target=min(self.targets), policy_period_s=policy_period_s)
        non_negative(self.name, tolerance=tolerance, stabilization_window_s=stabilization_window_s,
                     scale_up_stabilization_s=scale_up_stabilization_s,
                     scale_up_percent=scale_up_percent, scale_up_pods=scale_up_pods,
                     scale_down_percent=scale_down_percent)
        if scale_down_percent > 100:
            raise ValueError(f"{self.name}: scale_down_percent must be <= 100, got "
                             f"{scale_down_percent}")
        self.tolerance = tolerance
        up, down = behavior_rules(stabilization_window_s, scale_up_stabilization_s,
                                  scale_up_percent, int(scale_up_pods), scale_down_percent,
                                  policy_period_s)
        self.behaviors = [HpaBehavior(up, down) for _ in range(context.pool_count)]
        self.min_replicas = tuple(max(m, 1) for m in context.min_replicas)

    def reset(self) -> None:
        """Forget recommendations and scale events of every pool."""
        for behavior in self.behaviors:
            behavior.reset()

    def _pool(self, observed: PolicyInput, i: int) -> PoolResult:
        now = observed.time_s
        pool = observed.pools[i]
        behavior = self.behaviors[i]
        current = observed.desired[i]
        low, high = self.min_replicas[i], self.context.max_replicas[i]
        behavior.seed(now, current)
        if current > high:
            behavior.record(now, current, high)
            return PoolResult(high, "TooManyReplicas", f"{current} replicas above max {high}")
        if current < self.context.min_replicas[i]:
            behavior.record(now, current, low)
            return PoolResult(low, "TooFewReplicas", f"{current} replicas below min {low}")
        if current == 0:
            return PoolResult(0, "ScalingDisabled", "0 replicas: scaling is disabled")
        samples, missing = ready_samples(observed.snapshot, pool)
        values = [METRICS[self.metric](s) for s in samples]
        unready = pool.starting_replicas + pool.pending_replicas
        target = self.targets[i]
        calc = plain_metric_replicas(values, missing, unready, current, target, self.tolerance)
        if calc is None:
            return PoolResult(current, "NoMetrics", f"no {self.metric} from any of "
                              f"{pool.ready_replicas} ready pods; keeping {current}", False)
        final, reason = behavior.apply(now, current, calc.replicas, low, high,
                                       calc.within_tolerance)
        message = (f"{self.metric} {calc.usage:.3g}/pod over {len(values)} ready pods "
                   f"({missing} missing, {unready} unready), target {target:g}, ratio "
                   f"{calc.ratio:.3f} -> {calc.replicas}; {current} -> {final}")
        return PoolResult(final, reason, message)


class HpaRunning(HorizontalPodAutoscaler):
    """:class:`HorizontalPodAutoscaler` on ``running`` requests per pod (default target 40),
    with the running-requests tuning grid."""

    name = "hpa-running"
    DEFAULT_METRIC = "running"
    TUNE_GRID: ClassVar[tuple[float, ...]] = TUNE_GRIDS["running"]
