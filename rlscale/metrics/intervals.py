"""What happened in each pool between two snapshots: rates, gauges and interval percentiles.

How the numbers are made (as Prometheus would make them):

* **Rates** come from counter deltas per pod name between two snapshots, divided by the time
  between them. A pod that appears starts from 0; a pod that disappeared is ignored; a pod whose
  counter (or histogram bucket) series went down was reset, and its new value is its delta (as
  Prometheus' ``rate`` does, per series); a reset request counter restarts the pod's gauges too.
* **Arrival rate** of a pool = (Δ ``request_success_total`` + Δ(running + waiting)) / Δt,
  clipped at 0: what reached its pods (vLLM has no arrival counter).
* **Percentiles** and **SLO-violation fractions** over an interval come from the pool's summed
  histogram bucket deltas (:mod:`~rlscale.metrics.histograms`).

:class:`SnapshotArrays` holds one snapshot as arrays (pods in rows; computed once per snapshot
by the observation builder), :func:`interval_arrays` the per-pool arrays of one interval, and
:func:`interval_stats` the same as :class:`PoolInterval` records for the heuristics. Running,
waiting and KV usage sum (or average) over every pod in the snapshot, draining ones included.
Pods and statuses of pools the config does not name are ignored.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rlscale.metrics.histograms import fractions_above, quantiles
from rlscale.metrics.observation_config import ObservationConfig
from rlscale.metrics.snapshot import (
    GENERATION,
    HIST0,
    INFLIGHT,
    KV,
    PROMPT,
    RUNNING,
    SUCCESS,
    WAITING,
    ClusterSnapshot,
    PodCounters,
    PodSample,
)
from rlscale.metrics.vllm import ITL_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.weights import traffic_shares

FloatArray = npt.NDArray[np.float64]

QUANTILES = np.array([0.5, 0.9, 0.99])
"""The interval percentiles computed: p50, p90, p99."""


@dataclass(frozen=True)
class PoolInterval:
    """What happened in one pool between two snapshots (rates over the interval; replica
    counts, gauges and routing share at its end). Latencies are NaN without observations."""

    pool: str
    arrival_rps: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    completions_rps: float
    running_per_replica: float
    waiting_per_replica: float
    kv_cache_usage: float
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    itl_p50_s: float
    itl_p90_s: float
    itl_p99_s: float
    ttft_slo_violation: float
    itl_slo_violation: float
    observed_requests: int
    ready_replicas: int
    starting_replicas: int
    pending_replicas: int
    draining_replicas: int
    routing_share: float


class SnapshotArrays:
    """One snapshot as arrays, pods in rows (computed once per snapshot): its pods'
    :class:`~rlscale.metrics.snapshot.PodCounters` (the snapshot's own if it has them, else
    made from its samples), summed per pool, and the pools' status."""

    __slots__ = ("draining", "free_gpus", "itl_edges", "member", "names", "npods", "pending",
                 "pool_sums", "ready", "rows", "starting", "status", "time_s", "ttft_edges",
                 "values", "weight")

    def __init__(self, snapshot: ClusterSnapshot, config: ObservationConfig,
                 index: dict[str, int]) -> None:
        npools = len(config.pools)
        self.time_s = float(snapshot.time_s)
        status = np.zeros((5, npools))
        seen = [False] * npools
        for pool in snapshot.pools:
            i = index.get(pool.pool)
            if i is not None:
                seen[i] = True
                status[:, i] = (pool.ready_replicas, pool.starting_replicas,
                                pool.pending_replicas, pool.draining_replicas,
                                pool.routing_weight)
        if not all(seen):
            missing = [p.name for p, s in zip(config.pools, seen, strict=True) if not s]
            raise ValueError(f"snapshot at t={snapshot.time_s}: no status for pool(s) {missing}")
        self.status = status
        """Rows: ready, starting, pending, draining replicas and routing weight per pool."""
        self.ready, self.starting, self.pending, self.draining, self.weight = status
        free = snapshot.free_gpus
        self.free_gpus = np.array([free.get(p.gpu_type, 0) for p in config.pools], float)

        counters = snapshot.counters()
        if counters is None:
            counters = pod_counters([p for p in snapshot.pods if p.pool in index],
                                    snapshot.time_s)
        elif not all(pool in index for pool in counters.pools):
            counters = _of_pools(counters, index)
        self.names = counters.names
        self.rows = {name: row for row, name in enumerate(self.names)}
        if len(self.rows) != len(self.names):
            raise ValueError(f"snapshot at t={snapshot.time_s}: pod names are not unique")
        self.ttft_edges, self.itl_edges = counters.ttft_edges, counters.itl_edges
        self.values = counters.values
        npods = len(self.names)
        self.member = np.zeros((npools, npods))
        self.member[np.array([index[p] for p in counters.pools], dtype=np.intp),
                    np.arange(npods)] = 1.0
        self.pool_sums = self.member @ self.values
        self.npods = self.member.sum(axis=1)


def pod_counters(pods: Sequence[PodSample], time_s: float) -> PodCounters:
    """The samples' :class:`~rlscale.metrics.snapshot.PodCounters` (``time_s``, the
    snapshot's time, only names it in errors). Raises ValueError if the pods do not share
    their histograms' bucket edges."""
    ttft_edges, itl_edges = _snapshot_edges(pods, time_s)
    flat: list[float] = []
    for p in pods:  # one flat list: numpy reads it faster than a list of rows
        flat += (p.num_requests_running + p.num_requests_waiting, p.num_requests_running,
                 p.num_requests_waiting, p.kv_cache_usage_perc, p.request_success_total,
                 p.prompt_tokens_total, p.generation_tokens_total)
        flat += p.time_to_first_token_seconds.cumulative
        flat += p.inter_token_latency_seconds.cumulative
    values = np.array(flat, float).reshape(
        len(pods), HIST0 + len(ttft_edges) + len(itl_edges) + 2)
    return PodCounters(tuple(p.pod for p in pods), tuple(p.pool for p in pods), ttft_edges,
                       itl_edges, values)


def _of_pools(counters: PodCounters, pools: Container[str]) -> PodCounters:
    """The rows of ``counters`` whose pods are in ``pools``."""
    keep = [row for row, pool in enumerate(counters.pools) if pool in pools]
    return PodCounters(tuple(counters.names[row] for row in keep),
                       tuple(counters.pools[row] for row in keep), counters.ttft_edges,
                       counters.itl_edges, counters.values[keep])


def _snapshot_edges(pods: Sequence[PodSample], time_s: float
                    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The TTFT and ITL bucket edges shared by all pods (vLLM's when there are no pods)."""
    if not pods:
        return TTFT_BUCKETS_S, ITL_BUCKETS_S
    ttft = pods[0].time_to_first_token_seconds.edges
    itl = pods[0].inter_token_latency_seconds.edges
    for pod in pods:
        if (pod.time_to_first_token_seconds.edges != ttft
                or pod.inter_token_latency_seconds.edges != itl):
            raise ValueError(
                f"snapshot at t={time_s}: pod {pod.pod!r} has other histogram buckets than "
                f"pod {pods[0].pod!r}; every pod must export the same vLLM buckets")
    return ttft, itl


@dataclass
class IntervalArrays:
    """Per-pool arrays (length P) for one interval; latencies only when computed in full."""

    arrival_rps: FloatArray
    completions_rps: FloatArray
    prompt_tokens_per_s: FloatArray
    generation_tokens_per_s: FloatArray
    observed: FloatArray
    ttft_q: FloatArray  # P x 3: p50, p90, p99 (s)
    itl_q: FloatArray  # P x 3 (s)
    ttft_violation: FloatArray
    itl_violation: FloatArray


def interval_arrays(prev: SnapshotArrays | None, cur: SnapshotArrays,
                    config: ObservationConfig, full: bool) -> IntervalArrays:
    """Per-pool rates between ``prev`` and ``cur`` (0 without ``prev`` or at the same time);
    percentiles and violation fractions too if ``full`` (else NaN)."""
    npools = len(config.pools)
    k_ttft = len(cur.ttft_edges) + 1
    if prev is None or cur.time_s == prev.time_s:
        zeros = np.zeros(npools)
        nan3 = np.full((npools, 3), np.nan)
        nan1 = np.full(npools, np.nan)
        return IntervalArrays(zeros, zeros, zeros, zeros, zeros, nan3, nan3, nan1, nan1)
    dt = cur.time_s - prev.time_s
    if dt < 0:
        raise ValueError(f"snapshots out of order: t={prev.time_s} comes before t={cur.time_s}")
    delta = cur.pool_sums
    same_buckets = (prev.ttft_edges == cur.ttft_edges and prev.itl_edges == cur.itl_edges)
    if same_buckets and prev.names:
        if prev.names == cur.names:  # the same pods in the same rows (most intervals)
            before, after, member = prev.values.copy(), cur.values, cur.member
        else:
            lookup = prev.rows.get
            matched = np.array([lookup(name, -1) for name in cur.names], dtype=np.intp)
            keep = np.flatnonzero(matched >= 0)
            before, after, member = (prev.values[matched[keep]].copy(), cur.values[keep],
                                     cur.member[:, keep])
        if len(before):
            # A counter that went down was reset: its growth is its current value. Judged per
            # series (as Prometheus's rate() does), so one odd series cannot turn a whole
            # pod's cumulative counts into one interval's growth; a reset of the request
            # counter is a restart, whose gauges start afresh too.
            reset = after[:, SUCCESS:] < before[:, SUCCESS:]
            before[:, SUCCESS:][reset] = 0.0
            before[reset[:, 0], :SUCCESS] = 0.0
            delta = delta - member @ before
    arrival = np.maximum(delta[:, SUCCESS] + delta[:, INFLIGHT], 0.0) / dt
    observed = delta[:, HIST0 + k_ttft - 1]
    if not full:
        nan3 = np.full((npools, 3), np.nan)
        nan1 = np.full(npools, np.nan)
        latencies = (nan3, nan3, nan1, nan1)
    else:
        ttft = delta[:, HIST0:HIST0 + k_ttft]
        itl = delta[:, HIST0 + k_ttft:]
        ttft_edges = np.asarray(cur.ttft_edges)
        itl_edges = np.asarray(cur.itl_edges)
        latencies = (quantiles(ttft_edges, ttft, QUANTILES),
                     quantiles(itl_edges, itl, QUANTILES),
                     fractions_above(ttft_edges, ttft, config.slo_ttft_s),
                     fractions_above(itl_edges, itl, config.slo_itl_s))
    return IntervalArrays(arrival, delta[:, SUCCESS] / dt, delta[:, PROMPT] / dt,
                          delta[:, GENERATION] / dt, observed, *latencies)


def routing_share(cur: SnapshotArrays) -> FloatArray:
    """Each pool's share of traffic: its weight over the sum of weights of pools with ready
    replicas (0 without; :func:`rlscale.weights.traffic_shares`)."""
    return np.asarray(traffic_shares(cur.weight.tolist(), (cur.ready > 0).tolist()))


def interval_stats(prev: ClusterSnapshot | None, cur: ClusterSnapshot,
                   config: ObservationConfig) -> tuple[PoolInterval, ...]:
    """What happened in each pool (config order) between ``prev`` and ``cur``.

    With ``prev`` None (or at the same time) rates are 0 and latencies NaN. Raises
    ValueError if ``prev`` is newer than ``cur`` or a pool has no status in a snapshot.
    """
    index = {p.name: i for i, p in enumerate(config.pools)}
    after = SnapshotArrays(cur, config, index)
    before = None if prev is None else SnapshotArrays(prev, config, index)
    return pool_intervals(after, interval_arrays(before, after, config, full=True), config)


def pool_intervals(after: SnapshotArrays, stats: IntervalArrays,
                   config: ObservationConfig) -> tuple[PoolInterval, ...]:
    """The :class:`PoolInterval` records of an interval ending at ``after`` whose per-pool
    arrays (computed in full) are ``stats``."""
    ready = np.maximum(after.ready, 1.0)
    share = routing_share(after)
    kv = after.pool_sums[:, KV] / np.maximum(after.npods, 1.0)
    return tuple(
        PoolInterval(
            pool=pool.name,
            arrival_rps=float(stats.arrival_rps[i]),
            prompt_tokens_per_s=float(stats.prompt_tokens_per_s[i]),
            generation_tokens_per_s=float(stats.generation_tokens_per_s[i]),
            completions_rps=float(stats.completions_rps[i]),
            running_per_replica=float(after.pool_sums[i, RUNNING] / ready[i]),
            waiting_per_replica=float(after.pool_sums[i, WAITING] / ready[i]),
            kv_cache_usage=float(kv[i]),
            ttft_p50_s=float(stats.ttft_q[i, 0]),
            ttft_p90_s=float(stats.ttft_q[i, 1]),
            ttft_p99_s=float(stats.ttft_q[i, 2]),
            itl_p50_s=float(stats.itl_q[i, 0]),
            itl_p90_s=float(stats.itl_q[i, 1]),
            itl_p99_s=float(stats.itl_q[i, 2]),
            ttft_slo_violation=float(stats.ttft_violation[i]),
            itl_slo_violation=float(stats.itl_violation[i]),
            observed_requests=int(stats.observed[i]),
            ready_replicas=int(after.ready[i]),
            starting_replicas=int(after.starting[i]),
            pending_replicas=int(after.pending[i]),
            draining_replicas=int(after.draining[i]),
            routing_share=float(share[i]),
        )
        for i, pool in enumerate(config.pools))
