"""``planner``: an SLO planner in the manner of NVIDIA Dynamo's SLA planner.

Dynamo's planner (docs.nvidia.com/dynamo, "SLA-based Planner" and "Planner Design") runs every
``adjustment_interval``: it collects the request rate, predicts the next interval's load
(constant, ARIMA or Prophet predictors) and sets replicas to ``ceil(predicted load / per-replica
throughput at the SLA)`` from pre-deployment profiling, within a GPU budget. Here:

* load = Σ pools' observed arrival rate (what reached the pods, req/s), forecast by ``last``
  (Dynamo's constant predictor), ``ewma`` or a least-squares ``trend`` over ``trend_window_s``
  extrapolated one interval ahead; plus the pools' waiting backlog drained over
  ``backlog_drain_s``;
* required capacity = load × (1 + ``headroom``), with the profiled per-replica capacity at the
  SLO (``capacity_rps``);
* pools are filled cheapest first by price per capacity (``price_per_replica_hour /
  capacity_rps``), each from its ``min_replicas`` up to ``max_replicas`` and the replicas its
  GPU type can still hold (ready + starting + free GPUs / GPUs per replica; pools of one type
  share the free GPUs), so replicas still starting count and are not provisioned twice;
* scale-up is immediate; scale-down waits until the target has stayed lower for
  ``scale_down_delay_s`` and then removes at most ``max_scale_down`` replicas per pool per
  decision;
* routing weights are ready replicas × capacity_rps (0 for pools without ready replicas).
"""

from __future__ import annotations

import math
from typing import ClassVar

from rlscale.agents.baselines._common import (
    Baseline,
    PoolResult,
    as_count,
    capacity_weights,
    check_pools,
    combine,
    non_negative,
    positive,
)
from rlscale.agents.policy import Decision, PolicyContext, PolicyInput

FORECASTS = ("last", "ewma", "trend")


class SloPlanner(Baseline):
    """Forecast-driven provisioning across pools, cheapest capacity first.

    Knobs:
        headroom: capacity planned above the forecast load (fraction, default 0.2; down to
            -0.15 plans on the full SLO-bound capacity, which already keeps 15 % in reserve).
        forecast: "last" (default), "ewma" or "trend".
        ewma_alpha: weight of the newest rate in the EWMA (0-1, default 0.5).
        trend_window_s: span of rates the trend is fitted on (s, default 300).
        backlog_drain_s: seconds over which the waiting backlog is to be served (default 60).
        max_scale_down: replicas removed per pool per decision at most (default 1).
        scale_down_delay_s: how long the target must stay below the current count before
            scaling down (s, default 120).
    """

    name = "planner"
    TUNABLE: ClassVar[str] = "headroom"
    TUNE_GRID: ClassVar[tuple[float, ...]] = (-0.15, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5)

    def __init__(self, context: PolicyContext, *, headroom: float = 0.2, forecast: str = "last",
                 ewma_alpha: float = 0.5, trend_window_s: float = 300.0,
                 backlog_drain_s: float = 60.0, max_scale_down: float = 1,
                 scale_down_delay_s: float = 120.0) -> None:
        if forecast not in FORECASTS:
            raise ValueError(f"{self.name}: unknown forecast {forecast!r}; valid: {FORECASTS}")
        non_negative(self.name, scale_down_delay_s=scale_down_delay_s)
        if not headroom > -1.0:
            raise ValueError(f"{self.name}: headroom must be > -1, got {headroom}")
        positive(self.name, ewma_alpha=ewma_alpha, trend_window_s=trend_window_s,
                 backlog_drain_s=backlog_drain_s, max_scale_down=max_scale_down)
        if ewma_alpha > 1:
            raise ValueError(f"{self.name}: ewma_alpha must be <= 1, got {ewma_alpha}")
        self.context = context
        self.headroom = headroom
        self.forecast = forecast
        self.ewma_alpha = ewma_alpha
        self.trend_window_s = trend_window_s
        self.backlog_drain_s = backlog_drain_s
        self.max_scale_down = as_count(f"{self.name}: max_scale_down", max_scale_down)
        self.scale_down_delay_s = scale_down_delay_s
        pools = context.observation.pools
        self.order = sorted(range(len(pools)), key=lambda i: (
            pools[i].price_per_replica_hour / pools[i].capacity_rps, i))
        self.reset()

    def reset(self) -> None:
        """Forget the rate history and pending scale-downs."""
        self.rates: list[tuple[float, float]] = []
        self.ewma: float | None = None
        self.lower_since: list[float | None] = [None] * self.context.pool_count

    def predict(self, now: float, rate: float) -> float:
        """Record the interval's total arrival ``rate`` (req/s) at ``now`` and forecast the
        next interval's (req/s, >= 0)."""
        self.rates = [(t, r) for t, r in self.rates if t > now - self.trend_window_s]
        self.rates.append((now, rate))
        self.ewma = rate if self.ewma is None else (
            self.ewma_alpha * rate + (1 - self.ewma_alpha) * self.ewma)
        if self.forecast == "ewma":
            return self.ewma
        if self.forecast == "last" or len(self.rates) < 2:
            return rate
        n = len(self.rates)
        mean_t = sum(t for t, _ in self.rates) / n
        mean_r = sum(r for _, r in self.rates) / n
        var = sum((t - mean_t) ** 2 for t, _ in self.rates)
        if var <= 0:
            return rate
        slope = sum((t - mean_t) * (r - mean_r) for t, r in self.rates) / var
        return max(0.0, mean_r + slope * (now + self.context.interval_s - mean_t))

    def targets(self, observed: PolicyInput, required: float) -> tuple[list[int], list[int]]:
        """Replicas per pool covering ``required`` req/s cheapest first, and each pool's upper
        limit (max_replicas and the GPUs its type can still hold)."""
        pools = self.context.observation.pools
        free = dict(observed.snapshot.free_gpus)
        active = [p.ready_replicas + p.starting_replicas for p in observed.pools]
        target = list(self.context.min_replicas)
        for i, info in enumerate(pools):
            free[info.gpu_type] = free.get(info.gpu_type, 0) - max(
                0, target[i] - active[i]) * info.gpus_per_replica
        limits = [0] * len(pools)
        remaining = required - sum(t * p.capacity_rps for t, p in zip(target, pools, strict=True))
        for i in self.order:
            info = pools[i]
            spare = max(0, free.get(info.gpu_type, 0)) // info.gpus_per_replica
            limits[i] = max(target[i], min(info.max_replicas, max(active[i], target[i]) + spare))
            if remaining <= 0:
                continue
            take = min(limits[i], target[i] + math.ceil(remaining / info.capacity_rps))
            grown = max(0, take - max(active[i], target[i]))
            free[info.gpu_type] = free.get(info.gpu_type, 0) - grown * info.gpus_per_replica
            remaining -= (take - target[i]) * info.capacity_rps
            target[i] = take
        return target, limits

    def decide(self, observed: PolicyInput) -> Decision:
        """Replicas for the forecast load, scaled down gradually; weights by ready capacity."""
        check_pools(self.name, self.context, observed)
        now = observed.time_s
        pools = observed.pools
        if not observed.snapshot.pods and not any(p.ready_replicas for p in pools):
            return Decision(tuple(observed.desired), (0.0,) * len(pools), False, "NoMetrics",
                            "no pod metrics and no ready replica: arrival rate unknown")
        arrival = sum(p.arrival_rps for p in pools)
        backlog = sum(p.waiting_per_replica * max(p.ready_replicas, 1) for p in pools)
        forecast = self.predict(now, arrival)
        required = (forecast + backlog / self.backlog_drain_s) * (1.0 + self.headroom)
        target, limits = self.targets(observed, required)
        short = required - sum(
            t * p.capacity_rps for t, p in zip(target, self.context.observation.pools, strict=True))
        results = []
        for i, info in enumerate(self.context.observation.pools):
            current = observed.desired[i]
            want = target[i]
            if want >= current:
                self.lower_since[i] = None
                new = want
                reason = "ScaleUp" if want > current else "Stable"
                if short > 0 and want == limits[i]:
                    reason = "CapacityLimited"
            else:
                since = self.lower_since[i]
                if since is None:
                    since = self.lower_since[i] = now
                if now - since >= self.scale_down_delay_s:
                    new, reason = max(want, current - self.max_scale_down), "ScaleDown"
                else:
                    new, reason = current, "ScaleDownDelayed"
            results.append(PoolResult(new, reason, (
                f"target {want} (limit {limits[i]}, {info.capacity_rps:.2f} req/s each, "
                f"${info.price_per_replica_hour / info.capacity_rps:.3f}/h per req/s); "
                f"{current} -> {new}")))
        prefix = (f"arrival {arrival:.2f} req/s, forecast ({self.forecast}) {forecast:.2f}, "
                  f"backlog {backlog:g} over {self.backlog_drain_s:g}s, headroom "
                  f"{self.headroom:g} -> {required:.2f} req/s needed"
                  f"{f', {short:.2f} short' if short > 0 else ''}; ")
        replicas = [r.replicas for r in results]
        weights = capacity_weights(self.context, pools, replicas, cold_start_share=False)
        return combine(self.context, observed, results, weights, prefix)
