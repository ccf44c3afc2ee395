"""Helpers shared by the heuristic baselines: per-pod samples, routing weights, knob checks, and
turning per-pool results into one :class:`~rlscale.agents.policy.Decision`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.metrics.intervals import PoolInterval
from rlscale.metrics.snapshot import ClusterSnapshot, PodSample

# The most telling reason first: the decision's reason is the first one any pool reports.
_REASON_ORDER = (
    "CapacityLimited", "ScaleUpLimit", "TooManyReplicas", "ScaleUp", "Panic", "ScaleFromZero",
    "ScaleDownLimit", "TooFewReplicas", "ScaleDown", "ScaleToZero", "ScaleDownStabilized",
    "ScaleUpStabilized",
    "ScaleDownDelayed", "NoMetrics", "ScalingDisabled", "WithinTolerance", "Inactive", "Stable",
)


class Baseline:
    """What every baseline class has: a registry ``name``, its main knob ``TUNABLE`` with
    candidate values ``TUNE_GRID``, a constructor taking the context and keyword knobs, and the
    :class:`~rlscale.agents.policy.Policy` methods."""

    name: str = "baseline"
    TUNABLE: ClassVar[str]
    TUNE_GRID: ClassVar[tuple[float, ...]]

    def __init__(self, context: PolicyContext, **knobs: Any) -> None:
        self.context = context

    def reset(self) -> None:
        """Forget state from an earlier episode or run."""

    def decide(self, observed: PolicyInput) -> Decision:
        """The decision for ``observed``."""
        raise NotImplementedError


@dataclass(frozen=True)
class PoolResult:
    """One pool's part of a decision.

    Attributes:
        replicas: desired replicas; reason: CamelCase reason; message: numbers behind it;
        valid: False when the pool had no usable metrics (its current replicas are kept).
    """

    replicas: int
    reason: str
    message: str
    valid: bool = True


class PerPoolBaseline(Baseline):
    """A single-pool autoscaler run on every pool, as one HPA (or KPA, or KEDA ScaledObject)
    per Deployment would: each pool scales on its own metric, traffic follows ready capacity."""

    def decide(self, observed: PolicyInput) -> Decision:
        """One reconcile per pool at ``observed.time_s``, combined into one decision."""
        check_pools(self.name, self.context, observed)
        results = [self._pool(observed, i) for i in range(self.context.pool_count)]
        replicas = [r.replicas for r in results]
        weights = capacity_weights(self.context, observed.pools, replicas, cold_start_share=True)
        return combine(self.context, observed, results, weights)

    def _pool(self, observed: PolicyInput, i: int) -> PoolResult:
        """Pool ``i``'s replicas and reason."""
        raise NotImplementedError


def check_pools(policy: str, context: PolicyContext, observed: PolicyInput) -> None:
    """Raise ValueError unless ``observed`` has one pool statistic and one desired count per
    pool of ``context``, in the same order."""
    names = tuple(p.name for p in context.observation.pools)
    got = tuple(p.pool for p in observed.pools)
    if got != names or len(observed.desired) != len(names):
        raise ValueError(f"{policy}: expected pools {names} with one desired count each, got "
                         f"{got} and {len(observed.desired)} desired counts")


def clamp(value: int, low: int, high: int) -> int:
    """``value`` within ``[low, max(low, high)]``."""
    return max(low, min(value, max(low, high)))


def ready_samples(snapshot: ClusterSnapshot, pool: PoolInterval) -> tuple[list[PodSample], int]:
    """The pod samples taken as the pool's ready pods, and how many ready pods had none.

    The snapshot has samples of ready and draining pods without saying which is which. When a
    pool has more samples than ready replicas, the extra ones with the least load (running +
    waiting; draining pods get no new requests) are taken as the draining ones and dropped, as
    the HPA ignores terminating pods and Knative only scrapes pods behind the Service.
    """
    samples = list(snapshot.pods_of(pool.pool))
    ready = pool.ready_replicas
    if len(samples) > ready:
        samples.sort(key=lambda s: (s.num_requests_running + s.num_requests_waiting,
                                    s.kv_cache_usage_perc, s.pod), reverse=True)
        samples = samples[:ready]
    return samples, ready - len(samples)


def capacity_weights(context: PolicyContext, pools: Sequence[PoolInterval],
                     replicas: Sequence[int], *, cold_start_share: bool) -> tuple[float, ...]:
    """Routing weights proportional to ready capacity: ``ready_replicas × capacity_rps``.

    With ``cold_start_share`` a pool without ready replicas that asks for some gets the capacity
    of one replica, so the replica that becomes ready first gets traffic before the next
    decision (the router ignores weights of pools without ready replicas until then). Without
    it such a pool gets weight 0.
    """
    weights = []
    for info, pool, want in zip(context.observation.pools, pools, replicas, strict=True):
        count = pool.ready_replicas
        if count == 0 and cold_start_share:
            count = min(want, 1)
        weights.append(float(count) * info.capacity_rps)
    return tuple(weights)


def combine(context: PolicyContext, observed: PolicyInput, results: Sequence[PoolResult],
            weights: Sequence[float], prefix: str = "") -> Decision:
    """One decision from per-pool results: replicas clamped to the context's limits, the most
    telling reason, ``prefix`` and every pool's message; invalid (current replicas kept) only
    if no pool had usable metrics."""
    replicas = tuple(clamp(r.replicas, low, high) for r, low, high in zip(
        results, context.min_replicas, context.max_replicas, strict=True))
    reasons = [r.reason for r in results]
    reason = min(reasons, key=lambda r: _REASON_ORDER.index(r) if r in _REASON_ORDER
                 else len(_REASON_ORDER))
    names = [p.name for p in context.observation.pools]
    message = prefix + "; ".join(f"{name}: {r.message}"
                                 for name, r in zip(names, results, strict=True))
    valid = any(r.valid for r in results)
    if not valid:
        return Decision(tuple(observed.desired), tuple(weights), False, "NoMetrics", message)
    return Decision(replicas, tuple(weights), True, reason, message)


def per_pool(name: str, value: float | Sequence[float], count: int) -> tuple[float, ...]:
    """A knob given for every pool (a number) or per pool (a sequence of ``count``)."""
    if isinstance(value, (int, float)):
        return (float(value),) * count
    values = tuple(float(v) for v in value)
    if len(values) != count:
        raise ValueError(f"{name}: expected one value per pool ({count}), got {len(values)}")
    return values


def as_count(name: str, value: float) -> int:
    """An integral knob value (``4`` or ``4.0``) as an int; ValueError otherwise."""
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name}: expected a whole number, got {value}")
    return int(value)


def positive(policy: str, **values: float) -> None:
    """Raise ValueError naming the first knob that is not > 0."""
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{policy}: {key} must be > 0, got {value}")


def non_negative(policy: str, **values: float) -> None:
    """Raise ValueError naming the first knob that is not >= 0."""
    for key, value in values.items():
        if not value >= 0:
            raise ValueError(f"{policy}: {key} must be >= 0, got {value}")
