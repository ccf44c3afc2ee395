"""``keda``: a KEDA ``ScaledObject`` with a Prometheus trigger on ``vllm:num_requests_waiting``.

As in the vLLM production-stack tutorial "Autoscaling with KEDA" (``query:
vllm:num_requests_waiting``, ``threshold: '5'``, ``minReplicaCount: 1``; summed over the pool's
pods, since KEDA's Prometheus scaler needs one series) and KEDA's docs (ScaledObject spec,
Prometheus scaler): KEDA feeds the query's value to an HPA as an ``External`` metric with an
``AverageValue`` target of ``threshold``, so between 1 and max replicas the pool follows the
HPA's ``GetExternalPerPodMetricReplicas`` — ``ceil(total waiting / threshold)`` unless
``total / (threshold × status.replicas)`` is within the 10 % tolerance — and the HPA's default
behavior (300 s scale-down stabilization, rate policies), reusing :mod:`hpa_core`.

KEDA itself handles 0 <-> 1: the trigger is active while the value exceeds
``activation_threshold``; a pool at 0 is scaled to ``max(minReplicaCount, 1)`` when active; with
``minReplicaCount`` 0 a pool goes to 0 once the trigger has been inactive for ``cooldown_s``
(immediately if it never was active, as KEDA does for a new ScaledObject). The HPA's own minimum
is ``max(minReplicaCount, 1)``. A pool at 0 has no pod to report waiting requests, so without an
external queue metric it is not woken by demand (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rlscale.agents.baselines._common import (
    PerPoolBaseline,
    PoolResult,
    as_count,
    clamp,
    non_negative,
    per_pool,
    positive,
)
from rlscale.agents.baselines.hpa import behavior_rules
from rlscale.agents.baselines.hpa_core import TOLERANCE, HpaBehavior, external_per_pod_replicas
from rlscale.agents.policy import PolicyContext, PolicyInput


class KedaScaler(PerPoolBaseline):
    """KEDA Prometheus trigger on the pool's total waiting requests, per pool.

    Knobs:
        threshold: waiting requests per replica (the HPA's ``AverageValue``; default 5), one
            number or one per pool.
        activation_threshold: the trigger is active above this many waiting requests
            (default 0).
        cooldown_s: inactive seconds before scaling to 0 when ``min_replica_count`` is 0
            (``cooldownPeriod``, default 300).
        min_replica_count: ``minReplicaCount`` (default 1, as the production-stack tutorial;
            raised to the pool's min_replicas).
        tolerance / stabilization_window_s: of the HPA KEDA creates (defaults 0.1, 300 s).
    """

    name = "keda"
    TUNABLE: ClassVar[str] = "threshold"
    TUNE_GRID: ClassVar[tuple[float, ...]] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)

    def __init__(self, context: PolicyContext, *, threshold: float | Sequence[float] = 5.0,
                 activation_threshold: float = 0.0, cooldown_s: float = 300.0,
                 min_replica_count: float = 1, tolerance: float = TOLERANCE,
                 stabilization_window_s: float = 300.0) -> None:
        thresholds = per_pool(f"{self.name}: threshold", threshold, context.pool_count)
        positive(self.name, threshold=min(thresholds))
        non_negative(self.name, activation_threshold=activation_threshold, cooldown_s=cooldown_s,
                     min_replica_count=min_replica_count, tolerance=tolerance,
                     stabilization_window_s=stabilization_window_s)
        self.context = context
        self.thresholds = thresholds
        self.activation_threshold = activation_threshold
        self.cooldown_s = cooldown_s
        self.tolerance = tolerance
        count = as_count(f"{self.name}: min_replica_count", min_replica_count)
        self.min_count = tuple(clamp(max(count, low), low, high) for low, high in zip(
            context.min_replicas, context.max_replicas, strict=True))
        up, down = behavior_rules(stabilization_window_s, 0.0, 100.0, 4, 100.0, 15.0)
        self.behaviors = [HpaBehavior(up, down) for _ in range(context.pool_count)]
        self.last_active: list[float | None] = [None] * context.pool_count

    def reset(self) -> None:
        """Forget activity times, recommendations and scale events."""
        for behavior in self.behaviors:
            behavior.reset()
        self.last_active = [None] * self.context.pool_count

    def _pool(self, observed: PolicyInput, i: int) -> PoolResult:
        now = observed.time_s
        pool = observed.pools[i]
        current = observed.desired[i]
        waiting = float(sum(s.num_requests_waiting for s in observed.snapshot.pods_of(pool.pool)))
        active = waiting > self.activation_threshold
        if active:
            self.last_active[i] = now
        min_count = self.min_count[i]
        hpa_min, high = max(min_count, 1), self.context.max_replicas[i]
        state = f"{waiting:g} waiting ({'active' if active else 'inactive'})"
        if current == 0:
            if active:
                return PoolResult(hpa_min, "ScaleFromZero", f"{state}; 0 -> {hpa_min}")
            if min_count > 0:
                return PoolResult(min_count, "TooFewReplicas", f"{state}; 0 -> {min_count}")
            return PoolResult(0, "Inactive", f"{state}; staying at 0")
        last = self.last_active[i]
        if not active and min_count == 0 and (last is None or last + self.cooldown_s < now):
            since = "never active" if last is None else f"inactive for {now - last:g}s"
            return PoolResult(0, "ScaleToZero", f"{state}, {since}; {current} -> 0")
        behavior = self.behaviors[i]
        behavior.seed(now, current)
        if current > high or current < hpa_min:
            bound = high if current > high else hpa_min
            behavior.record(now, current, bound)
            reason = "TooManyReplicas" if current > high else "TooFewReplicas"
            return PoolResult(bound, reason, f"{state}; {current} -> {bound} (limits)")
        status = pool.ready_replicas + pool.starting_replicas + pool.pending_replicas
        calc = external_per_pod_replicas(waiting, status, self.thresholds[i], self.tolerance)
        final, reason = behavior.apply(now, current, calc.replicas, hpa_min, high,
                                       calc.within_tolerance)
        message = (f"{state} over {status} replicas, threshold {self.thresholds[i]:g}/replica, "
                   f"ratio {calc.ratio:.3f} -> {calc.replicas}; {current} -> {final}")
        return PoolResult(final, reason, message)
