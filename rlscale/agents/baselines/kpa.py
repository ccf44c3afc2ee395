"""``kpa``: the Knative Pod Autoscaler's concurrency algorithm, one autoscaler per pool.

A port of knative/serving ``pkg/autoscaler/scaling/autoscaler.go`` (``newAutoscaler`` and
``Scale``) with the defaults of the ``config-autoscaler`` ConfigMap (knative.dev docs,
"Configuring the autoscaler", "Configuring targets", "Additional autoscaling configuration for
the KPA"): target value = per-pod concurrency ``target`` × ``target_utilization`` (0.7);
``dspc = ceil(stable / target value)`` and ``dppc = ceil(panic / target value)`` from the
averages over the stable window (60 s) and the panic window (10 % of it, 6 s); both bounded by
``[floor(ready / max_scale_down_rate), ceil(max_scale_up_rate × ready)]`` (rates 2 and 1000,
ready at least 1); panic starts when ``dppc / ready >= 2`` (200 %), keeps the highest count seen
(no scale-down) and ends once the condition has been off for a stable window; a new autoscaler
starts in panic holding the ready count if more than one pod is ready. The result is clamped to
``[min_replicas, max_replicas]`` (min/max scale; ``min_replicas`` 0 allows scale to zero).

Concurrency is a pod's in-flight requests, vLLM's ``num_requests_running + num_requests_waiting``
(what the queue-proxy counts). Knative averages one-second buckets; here a sample is taken per
decision (every ``interval_s``, >= 6 s): the pool's total is the mean over its ready pods'
samples times the ready count (Knative's scraper extrapolates the same way), stored with its
time, and each window averages the samples inside it, so the panic window holds only the latest
sample. A pool without ready pods records 0 (Knative's scraper reports an empty stat; there is
no activator here to hold requests and report them, so a pool at 0 is not woken by demand).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from rlscale.agents.baselines._common import (
    PerPoolBaseline,
    PoolResult,
    clamp,
    per_pool,
    positive,
    ready_samples,
)
from rlscale.agents.policy import PolicyContext, PolicyInput


@dataclass
class _PoolState:
    samples: list[tuple[float, float]] = field(default_factory=list)
    started: bool = False
    panic_time: float | None = None
    max_panic_pods: int = 0


class KnativePodAutoscaler(PerPoolBaseline):
    """Knative KPA per pool on concurrency (running + waiting requests per pod).

    Knobs:
        target: soft concurrency target per pod, one number or one per pool (requests;
            default 128 — half of vLLM's default ``max_num_seqs`` 256; Knative's own default
            is 100).
        target_utilization: fraction of ``target`` aimed at (default 0.7).
        stable_window_s: stable window (s, default 60).
        panic_window_percentage: panic window as % of the stable window (default 10).
        panic_threshold_percentage: panic when the panic-window count reaches this % of the
            ready pods (default 200).
        max_scale_up_rate / max_scale_down_rate: per decision, at most ``ceil(rate × ready)``
            pods, at least ``floor(ready / rate)`` (defaults 1000 and 2).
    """

    name = "kpa"
    TUNABLE: ClassVar[str] = "target"
    TUNE_GRID: ClassVar[tuple[float, ...]] = (16.0, 32.0, 64.0, 96.0, 128.0, 160.0, 192.0, 256.0)

    def __init__(self, context: PolicyContext, *, target: float | Sequence[float] = 128.0,
                 target_utilization: float = 0.7, stable_window_s: float = 60.0,
                 panic_window_percentage: float = 10.0, panic_threshold_percentage: float = 200.0,
                 max_scale_up_rate: float = 1000.0, max_scale_down_rate: float = 2.0) -> None:
        targets = per_pool(f"{self.name}: target", target, context.pool_count)
        positive(self.name, target=min(targets), target_utilization=target_utilization,
                 stable_window_s=stable_window_s, panic_window_percentage=panic_window_percentage,
                 panic_threshold_percentage=panic_threshold_percentage)
        if max_scale_up_rate <= 1 or max_scale_down_rate <= 1:
            raise ValueError(f"{self.name}: max_scale_up_rate and max_scale_down_rate must be > 1, "
                             f"got {max_scale_up_rate} and {max_scale_down_rate}")
        if target_utilization > 1:
            raise ValueError(f"{self.name}: target_utilization must be <= 1, got "
                             f"{target_utilization}")
        self.context = context
        self.targets = targets
        self.target_values = tuple(t * target_utilization for t in targets)
        self.stable_window_s = stable_window_s
        self.panic_window_s = stable_window_s * panic_window_percentage / 100.0
        self.panic_threshold = panic_threshold_percentage / 100.0
        self.max_scale_up_rate = max_scale_up_rate
        self.max_scale_down_rate = max_scale_down_rate
        self.state = [_PoolState() for _ in range(context.pool_count)]

    def reset(self) -> None:
        """Forget samples and panic state (the next decision starts like a new autoscaler)."""
        self.state = [_PoolState() for _ in range(self.context.pool_count)]

    def _pool(self, observed: PolicyInput, i: int) -> PoolResult:
        now = observed.time_s
        pool = observed.pools[i]
        state = self.state[i]
        current = observed.desired[i]
        ready = pool.ready_replicas
        samples, _ = ready_samples(observed.snapshot, pool)
        if samples:
            per_pod = sum(s.num_requests_running + s.num_requests_waiting
                          for s in samples) / len(samples)
            state.samples.append((now, per_pod * ready))
        elif ready == 0:
            state.samples.append((now, 0.0))
        if not state.started:  # newAutoscaler: start in panic mode above one ready pod
            state.started = True
            if ready > 1:
                state.panic_time, state.max_panic_pods = now, ready
        state.samples = [(t, v) for t, v in state.samples if t > now - self.stable_window_s]
        stable = [v for _, v in state.samples]
        if not stable:
            return PoolResult(current, "NoMetrics", f"no concurrency sample from {ready} ready "
                              f"pods in the last {self.stable_window_s:g}s; keeping {current}",
                              False)
        panic = [v for t, v in state.samples if t > now - self.panic_window_s] or stable
        stable_value = sum(stable) / len(stable)
        panic_value = sum(panic) / len(panic)

        ready_count = max(1.0, float(ready))
        max_up = math.ceil(self.max_scale_up_rate * ready_count)
        max_down = math.floor(ready_count / self.max_scale_down_rate)
        dspc = math.ceil(stable_value / self.target_values[i])
        dppc = math.ceil(panic_value / self.target_values[i])
        stable_pods = int(min(max(dspc, max_down), max_up))
        panic_pods = int(min(max(dppc, max_down), max_up))
        over = dppc / ready_count >= self.panic_threshold
        if over:
            state.panic_time = now
        elif state.panic_time is not None and state.panic_time + self.stable_window_s < now:
            state.panic_time, state.max_panic_pods = None, 0
        desired = stable_pods
        if state.panic_time is not None:
            desired = max(desired, panic_pods, state.max_panic_pods)
            state.max_panic_pods = desired
        final = clamp(desired, self.context.min_replicas[i], self.context.max_replicas[i])
        if state.panic_time is not None:
            reason = "Panic"
        elif final != current:
            reason = "ScaleUp" if final > current else "ScaleDown"
        else:
            reason = "Stable"
        message = (f"concurrency {stable_value:.1f} over {self.stable_window_s:g}s "
                   f"({len(stable)} samples), {panic_value:.1f} over {self.panic_window_s:g}s, "
                   f"{ready} ready, target {self.target_values[i]:.1f}/pod -> "
                   f"stable {stable_pods}, "
                   f"panic {panic_pods}{' (panicking)' if reason == 'Panic' else ''}; "
                   f"{current} -> {final}")
        return PoolResult(final, reason, message)
