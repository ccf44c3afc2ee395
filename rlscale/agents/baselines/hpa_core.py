"""The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) algorithm for one scale target.

A line-by-line port of kubernetes/kubernetes ``pkg/controller/podautoscaler``:

* :func:`plain_metric_replicas` is ``ReplicaCalculator.calcPlainMetricReplicas`` (Pods metrics
  with an ``AverageValue`` target): usage ratio = mean over ready pods with metrics / target; no
  change within the tolerance; otherwise ``ceil(ratio × ready pods)``; when pods are missing
  metrics (0 on scale-up, the target on scale-down) or unready (0 on scale-up), the ratio is
  recomputed with them and the scale is kept if the direction would flip.
* :func:`external_per_pod_replicas` is ``GetExternalPerPodMetricReplicas`` (External metric with
  an ``AverageValue`` target, what KEDA creates): ``ceil(total / target)`` unless
  ``total / (target × status replicas)`` is within the tolerance.
* :class:`HpaBehavior` is ``horizontal.go``'s ``normalizeDesiredReplicasWithBehaviors``:
  ``stabilizeRecommendationWithBehaviors`` (the lowest recommendation of the scale-up window, the
  highest of the scale-down window, 300 s by default), then
  ``convertDesiredReplicasWithBehaviorRate`` with ``calculateScaleUpLimitWithScalingRules`` /
  ``calculateScaleDownLimitWithBehaviors`` over the scale events of each policy's period,
  ``storeScaleEvent``, and ``recordInitialRecommendation`` (a new HPA's window starts with the
  current replica count, so it does not scale down within its first window).

Metric values are handled as the metrics API does, in integer milli-units (the mean is the
integer division of the milli-sum); times are the policy input's ``time_s`` instead of the wall
clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance``: no change while |ratio − 1| <= 0.1."""


def milli(value: float) -> int:
    """A metric value as a Kubernetes quantity's milli-value."""
    return round(value * 1000)


@dataclass(frozen=True)
class MetricReplicas:
    """What the replica calculator recommends.

    Attributes:
        replicas: recommended replicas; ratio: usage / target (first pass); usage: the mean
        (or per-pod) metric value; within_tolerance: True when the current count was kept
        because the change would be too small or would flip direction.
    """

    replicas: int
    ratio: float
    usage: float
    within_tolerance: bool


def plain_metric_replicas(values: Sequence[float], missing: int, unready: int, current: int,
                          target: float, tolerance: float = TOLERANCE) -> MetricReplicas | None:
    """``calcPlainMetricReplicas``: replicas for per-pod ``values`` of the ready pods with
    metrics, ``missing`` ready pods without metrics, ``unready`` pods (starting, pending), the
    current ``spec.replicas`` and the per-pod ``target``; None without any metric."""
    if not values:
        return None
    target_m = max(milli(target), 1)
    metrics = [milli(v) for v in values]
    usage_m = sum(metrics) // len(metrics)
    ratio = usage_m / target_m
    usage = usage_m / 1000.0
    rebalance_unready = unready > 0 and ratio > 1.0
    if not rebalance_unready and missing == 0:
        if abs(1.0 - ratio) <= tolerance:
            return MetricReplicas(current, ratio, usage, True)
        return MetricReplicas(math.ceil(ratio * len(metrics)), ratio, usage, False)
    if missing > 0:
        metrics += [target_m if ratio < 1.0 else 0] * missing
    if rebalance_unready:
        metrics += [0] * unready
    new_ratio = (sum(metrics) // len(metrics)) / target_m
    if (abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio)
            or (new_ratio < 1.0 < ratio)):
        return MetricReplicas(current, ratio, usage, True)
    replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return MetricReplicas(current, ratio, usage, True)
    return MetricReplicas(replicas, ratio, usage, False)


def external_per_pod_replicas(total: float, status_replicas: int, target: float,
                              tolerance: float = TOLERANCE) -> MetricReplicas:
    """``GetExternalPerPodMetricReplicas``: replicas for an external metric's ``total`` with a
    per-pod ``target`` (``AverageValue``), given the Deployment's ``status.replicas``."""
    total_m = milli(total)
    target_m = max(milli(target), 1)
    if status_replicas <= 0:
        return MetricReplicas(math.ceil(total_m / target_m), math.inf if total_m else 0.0,
                              total_m / 1000.0, False)
    ratio = total_m / (target_m * status_replicas)
    usage = math.ceil(total_m / status_replicas) / 1000.0
    if abs(1.0 - ratio) > tolerance:
        return MetricReplicas(math.ceil(total_m / target_m), ratio, usage, False)
    return MetricReplicas(status_replicas, ratio, usage, True)


@dataclass(frozen=True)
class ScalingPolicy:
    """``HPAScalingPolicy``: ``kind`` "Pods" or "Percent", ``value`` (pods or percent) allowed
    per ``period_s`` seconds."""

    kind: str
    value: float
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    """``HPAScalingRules``: a stabilization window (s), a ``select`` policy ("Max", "Min" or
    "Disabled") and the rate policies."""

    stabilization_s: float
    select: str
    policies: tuple[ScalingPolicy, ...]


DEFAULT_SCALE_UP = ScalingRules(0.0, "Max", (ScalingPolicy("Percent", 100.0, 15.0),
                                             ScalingPolicy("Pods", 4.0, 15.0)))
"""The documented default: no stabilization; double or add 4 pods per 15 s, whichever is more."""

DEFAULT_SCALE_DOWN = ScalingRules(300.0, "Max", (ScalingPolicy("Percent", 100.0, 15.0),))
"""The documented default: 300 s stabilization; remove up to 100 % per 15 s."""


def _change_in_period(period_s: float, events: Sequence[tuple[float, int]], now: float) -> int:
    """``getReplicasChangePerPeriod``: replicas changed by events after ``now - period_s``."""
    cutoff = now - period_s
    return sum(change for t, change in events if t > cutoff)


class HpaBehavior:
    """Scale-down/up stabilization and rate limits of one HPA (state: recommendations and
    scale events, both time-stamped in seconds)."""

    def __init__(self, scale_up: ScalingRules = DEFAULT_SCALE_UP,
                 scale_down: ScalingRules = DEFAULT_SCALE_DOWN) -> None:
        self.scale_up = scale_up
        self.scale_down = scale_down
        self.recommendations: list[tuple[float, int]] = []
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []
        self.seeded = False

    def reset(self) -> None:
        """Forget recommendations and scale events."""
        self.recommendations.clear()
        self.up_events.clear()
        self.down_events.clear()
        self.seeded = False

    def seed(self, now: float, current: int) -> None:
        """``recordInitialRecommendation``: the first reconcile records the current replicas as
        a recommendation, so a new HPA does not scale down before a stabilization window."""
        if not self.seeded:
            self.seeded = True
            self.recommendations.append((now, current))

    def stabilize(self, now: float, current: int, desired: int) -> int:
        """``stabilizeRecommendationWithBehaviors``: ``desired`` bounded by the lowest
        recommendation of the scale-up window and the highest of the scale-down window (both
        including ``desired``), then recorded."""
        up_cut = now - self.scale_up.stabilization_s
        down_cut = now - self.scale_down.stabilization_s
        up = min([desired] + [r for t, r in self.recommendations if t > up_cut])
        down = max([desired] + [r for t, r in self.recommendations if t > down_cut])
        recommendation = min(max(current, up), down)
        self.recommendations = [(t, r) for t, r in self.recommendations
                                if not (t < up_cut and t < down_cut)]
        self.recommendations.append((now, desired))
        return recommendation

    def _period_start(self, period_s: float, now: float, current: int) -> int:
        """Replicas at the start of a policy's period: ``current`` less the scale-ups and plus
        the scale-downs made within the last ``period_s`` seconds."""
        return (current - _change_in_period(period_s, self.up_events, now)
                + _change_in_period(period_s, self.down_events, now))

    def scale_up_limit(self, now: float, current: int) -> int:
        """``calculateScaleUpLimitWithScalingRules``."""
        rules = self.scale_up
        if rules.select == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(policy.period_s, now, current)
            if policy.kind == "Pods":
                proposals.append(start + int(policy.value))
            else:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        return min(proposals) if rules.select == "Min" else max(proposals)

    def scale_down_limit(self, now: float, current: int) -> int:
        """``calculateScaleDownLimitWithBehaviors``."""
        rules = self.scale_down
        if rules.select == "Disabled":
            return current
        proposals = []
        for policy in rules.policies:
            start = self._period_start(policy.period_s, now, current)
            if policy.kind == "Pods":
                proposals.append(start - int(policy.value))
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        return max(proposals) if rules.select == "Min" else min(proposals)

    def normalize(self, now: float, current: int, desired: int, min_replicas: int,
                  max_replicas: int) -> tuple[int, str]:
        """``normalizeDesiredReplicasWithBehaviors``: the replicas to set and the limiting
        condition ("ScaleDownStabilized", "ScaleUpStabilized", "ScaleUpLimit",
        "TooManyReplicas", "ScaleDownLimit", "TooFewReplicas") or "" when nothing limited
        ``desired``."""
        stabilized = self.stabilize(now, current, desired)
        reason = ""
        if stabilized != desired:
            reason = "ScaleDownStabilized" if desired < current else "ScaleUpStabilized"
        if stabilized > current:
            limit = max(self.scale_up_limit(now, current), current)
            allowed, why = ((limit, "ScaleUpLimit") if max_replicas > limit
                            else (max_replicas, "TooManyReplicas"))
            if stabilized > allowed:
                return allowed, why
        elif stabilized < current:
            limit = min(self.scale_down_limit(now, current), current)
            allowed, why = ((limit, "ScaleDownLimit") if min_replicas < limit
                            else (min_replicas, "TooFewReplicas"))
            if stabilized < allowed:
                return allowed, why
        return stabilized, reason

    def apply(self, now: float, current: int, calculated: int, min_replicas: int,
              max_replicas: int, within_tolerance: bool) -> tuple[int, str]:
        """One reconcile's end: normalize ``calculated`` with the behaviour, record the rescale
        and name the reason (a limiting condition, ``ScaleUp``/``ScaleDown``,
        ``WithinTolerance`` or ``Stable``)."""
        final, limit = self.normalize(now, current, calculated, min_replicas, max_replicas)
        if final != current:
            self.record(now, current, final)
        if limit:
            return final, limit
        if final != current:
            return final, "ScaleUp" if final > current else "ScaleDown"
        return final, "WithinTolerance" if within_tolerance else "Stable"

    def record(self, now: float, previous: int, new: int) -> None:
        """``storeScaleEvent``: remember a rescale (dropping events older than the longest
        policy period of its direction)."""
        if new > previous:
            longest = max((p.period_s for p in self.scale_up.policies), default=0.0)
            self.up_events = [e for e in self.up_events if not e[0] < now - longest]
            self.up_events.append((now, new - previous))
        elif new < previous:
            longest = max((p.period_s for p in self.scale_down.policies), default=0.0)
            self.down_events = [e for e in self.down_events if not e[0] < now - longest]
            self.down_events.append((now, previous - new))
