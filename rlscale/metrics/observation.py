"""The observation builder: one vector per control step, from metrics snapshots only.

The environment (on simulated snapshots) and the controller (on scraped ones) call the same
:meth:`ObservationBuilder.observe` on a history of
:class:`~rlscale.metrics.snapshot.ClusterSnapshot`, so a policy sees in the cluster exactly what
it saw in training, and nothing the cluster cannot show: vLLM gauges, counters and histograms per
pod, Deployment status, routing weights, free GPUs.

How the numbers are made (as Prometheus would make them):

* **Rates** come from counter deltas per pod name between two snapshots, divided by the time
  between them. A pod that appears starts from 0; a pod that disappeared is ignored; a pod whose
  counters (or histogram buckets) went down restarted, and its new values are its deltas (as
  Prometheus' ``rate`` does; here the whole pod resets together).
* **Arrival rate** of a pool = (Δ ``request_success_total`` + Δ(running + waiting)) / Δt,
  clipped at 0: what reached its pods (vLLM has no arrival counter).
* **Percentiles** over an interval come from the pool's summed histogram bucket deltas with
  Prometheus' ``histogram_quantile`` (linear interpolation inside the bucket, lower bound 0 for
  the first bucket, the highest finite edge when the rank falls in ``+Inf``); NaN when the
  interval has no observation. The **SLO-violation fraction** is the fraction of observations
  above the threshold, interpolating linearly inside the bucket holding it (observations in
  ``+Inf`` count as above a threshold beyond the last edge).
* The **short window** is the last two snapshots; the **long window** runs from the newest
  snapshot at least ``long_window_s`` older than the last one (or the oldest one) to the last.

Observation (``float32``, ``size = 22 × pools + 4``). For each pool ``<p>``, in config order,
with ``max`` = its ``max_replicas``, ``ready₁ = max(ready, 1)``, ``cap = capacity_rps × max``
and ``tok = max × max_num_seqs / slo_itl_s`` (tokens/s: every sequence slot of every replica
emitting one token per ITL SLO; prompt rates can exceed it several times, hence the log scale):

===  ===========================  ==================================================  ========
 #   name                         value (unit)                                        range
===  ===========================  ==================================================  ========
 0   <p>/ready_frac               ready replicas / max                                0 - 10
 1   <p>/starting_frac            starting (cold-starting) replicas / max             0 - 10
 2   <p>/pending_frac             pending (unschedulable) replicas / max              0 - 10
 3   <p>/draining_frac            draining (terminating) replicas / max               0 - 10
 4   <p>/arrival_short            arrival rate over the short window (req/s) / cap    0 - 10
 5   <p>/arrival_long             arrival rate over the long window (req/s) / cap     0 - 10
 6   <p>/prompt_tokens            log1p(prompt tokens/s (short) / tok)                0 - 10
 7   <p>/generation_tokens        log1p(generation tokens/s (short) / tok)            0 - 10
 8   <p>/running                  running requests / ready₁ / max_num_seqs            0 - 10
 9   <p>/waiting                  log1p(waiting / ready₁) / log1p(max_num_seqs)       0 - 10
10   <p>/kv_cache_usage           mean KV-cache usage over its pods (fraction)        0 - 1
11   <p>/ttft_p50                 interval TTFT p50 (s) / slo_ttft_s                  0 - 10
12   <p>/ttft_p90                 interval TTFT p90 (s) / slo_ttft_s                  0 - 10
13   <p>/ttft_p99                 interval TTFT p99 (s) / slo_ttft_s                  0 - 10
14   <p>/itl_p50                  interval inter-token latency p50 (s) / slo_itl_s    0 - 10
15   <p>/itl_p90                  interval inter-token latency p90 (s) / slo_itl_s    0 - 10
16   <p>/ttft_slo_violation       fraction of interval TTFTs above slo_ttft_s         0 - 1
17   <p>/itl_slo_violation        fraction of interval inter-token gaps > slo_itl_s   0 - 1
18   <p>/has_traffic              1 if the interval has a TTFT observation, else 0    0 - 1
19   <p>/routing_share            weight / Σ weights of pools with ready replicas     0 - 1
20   <p>/free_gpus                free GPUs of its type / gpu_inventory               0 - 1
21   <p>/price                    price_per_replica_hour / max over pools             0 - 1
===  ===========================  ==================================================  ========

Then, global: ``arrival_short`` and ``arrival_long`` (Σ pool arrival rates / Σ cap, 0 - 10),
``time_of_day_sin`` and ``time_of_day_cos`` (of 2π (time_s mod day_length_s) / day_length_s,
-1 - 1). Latencies and violations of an interval without observations are 0 (then
``has_traffic`` is 0); every entry is clipped to its range. Replica ratios exceed 1 only if
something else scales the Deployment past ``max_replicas``. :attr:`ObservationBuilder.names`
and :attr:`ObservationBuilder.units` list every entry.

Running, waiting and KV usage sum (or average) over every pod in the snapshot, draining ones
included: the simulator exports them, so a controller must scrape terminating pods too. Pods and
statuses of pools the config does not name are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rlscale.metrics.snapshot import ClusterSnapshot, PodSample
from rlscale.metrics.vllm import ITL_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.weights import traffic_shares

FloatArray = npt.NDArray[np.float64]

_QUANTILES = np.array([0.5, 0.9, 0.99])


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class PoolInfo:
    """Static facts about one pool, used for normalization.

    Attributes:
        name: pool (Deployment) name, as in :class:`~rlscale.metrics.snapshot.PoolStatus`.
        gpu_type: the GPU type its pods need; gpus_per_replica: GPUs per pod.
        max_replicas: the most replicas an autoscaler may set (>= 1).
        max_num_seqs: vLLM's ``--max-num-seqs`` (running requests per replica at most).
        price_per_replica_hour: US dollars per replica-hour.
        capacity_rps: nominal requests/s one replica serves within the SLO.
        gpu_inventory: GPUs of its type in the cluster.
    """

    name: str
    gpu_type: str
    gpus_per_replica: int
    max_replicas: int
    max_num_seqs: int
    price_per_replica_hour: float
    capacity_rps: float
    gpu_inventory: int

    def __post_init__(self) -> None:
        problems = [f"{field} must be {rule}, got {value}" for field, value, ok, rule in (
            ("gpus_per_replica", self.gpus_per_replica, self.gpus_per_replica >= 1, ">= 1"),
            ("max_replicas", self.max_replicas, self.max_replicas >= 1, ">= 1"),
            ("max_num_seqs", self.max_num_seqs, self.max_num_seqs >= 1, ">= 1"),
            ("price_per_replica_hour", self.price_per_replica_hour,
             self.price_per_replica_hour >= 0, ">= 0"),
            ("capacity_rps", self.capacity_rps, self.capacity_rps > 0, "> 0"),
            ("gpu_inventory", self.gpu_inventory, self.gpu_inventory >= 0, ">= 0"),
        ) if not ok]
        if problems:
            raise ValueError(f"pool {self.name!r}: " + "; ".join(problems))


@dataclass(frozen=True)
class ObservationConfig:
    """What the observation is built for: the pools (in observation order) and the SLO.

    Attributes:
        pools: one :class:`PoolInfo` per pool; names must be unique.
        slo_ttft_s: time-to-first-token SLO (s); slo_itl_s: inter-token latency SLO (s).
        long_window_s: span of the long arrival-rate window (s).
        day_length_s: period of the time-of-day features (s; 86400 for a real day).
    """

    pools: tuple[PoolInfo, ...]
    slo_ttft_s: float
    slo_itl_s: float
    long_window_s: float = 300.0
    day_length_s: float = 86400.0

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("observation config: at least one pool is needed")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"observation config: pool names must be unique, got {names}")
        for field in ("slo_ttft_s", "slo_itl_s", "long_window_s", "day_length_s"):
            value = getattr(self, field)
            if not value > 0:
                raise ValueError(f"observation config: {field} must be > 0, got {value}")


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


# ---------------------------------------------------------------------------------- histograms
def _quantiles(edges: FloatArray, cum: FloatArray, qs: FloatArray) -> FloatArray:
    """Prometheus ``histogram_quantile`` for each row of ``cum`` (P x K cumulative counts,
    ``+Inf`` last) and each ``q`` in ``qs`` (all in [0, 1]): a P x Q array, NaN for empty rows."""
    rows, k = cum.shape
    if k < 2:
        return np.full((rows, len(qs)), np.nan)
    cum = np.maximum.accumulate(cum, axis=1)
    counts = cum[:, -1:]
    rank = counts * qs  # P x Q
    b = (cum[:, None, :] < rank[:, :, None]).sum(axis=2)  # first bucket with count >= rank
    np.minimum(b, k - 1, out=b)
    below = np.concatenate([np.zeros((rows, 1)), cum[:, :-1]], axis=1)
    lower = np.concatenate([[0.0], edges])[b]
    upper = np.concatenate([edges, edges[-1:]])[b]
    cum_b = np.take_along_axis(cum, b, axis=1)
    below_b = np.take_along_axis(below, b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * ((rank - below_b) / (cum_b - below_b))
    value = np.where(b == k - 1, edges[-1], value)
    if edges[0] <= 0:
        value = np.where(b == 0, edges[0], value)
    return np.where(counts > 0, value, np.nan)


def _fraction_above(edges: FloatArray, cum: FloatArray, threshold: float) -> FloatArray:
    """Fraction of each row's observations above ``threshold`` (NaN for empty rows)."""
    rows, k = cum.shape
    if k < 2:
        return np.full(rows, np.nan)
    cum = np.maximum.accumulate(cum, axis=1)
    counts = cum[:, -1]
    j = int(np.searchsorted(edges, threshold, side="left"))  # first edge >= threshold
    if j == len(edges):  # beyond the last finite edge: +Inf observations count as above
        at_or_below = cum[:, j - 1]
    else:
        lo = 0.0 if j == 0 else float(edges[j - 1])
        below = np.zeros(rows) if j == 0 else cum[:, j - 1]
        at_or_below = below + (cum[:, j] - below) * ((threshold - lo) / (edges[j] - lo))
        at_or_below = np.clip(at_or_below, 0.0, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 1.0 - at_or_below / counts, np.nan)


def histogram_quantile(q: float, edges: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile(q, ...)`` of one classic histogram.

    Args:
        q: the quantile; NaN gives NaN, below 0 gives -inf, above 1 gives +inf (as PromQL).
        edges: finite bucket upper bounds (``le``), increasing; cumulative: counts per edge
            plus the ``+Inf`` bucket last (e.g. bucket deltas over an interval).

    Returns:
        The interpolated value in the edges' unit; NaN without observations.
    """
    if math.isnan(q):
        return math.nan
    if q < 0 or q > 1:
        return -math.inf if q < 0 else math.inf
    return float(_quantiles(_edges(edges, cumulative), np.asarray([cumulative], float),
                            np.array([q]))[0, 0])


def histogram_fraction_above(threshold: float, edges: Sequence[float],
                             cumulative: Sequence[float]) -> float:
    """Fraction of one histogram's observations above ``threshold`` (same units as ``edges``),
    interpolating linearly inside the bucket that holds it; NaN without observations."""
    return float(_fraction_above(_edges(edges, cumulative), np.asarray([cumulative], float),
                                 threshold)[0])


def _edges(edges: Sequence[float], cumulative: Sequence[float]) -> FloatArray:
    if len(cumulative) != len(edges) + 1:
        raise ValueError(f"expected {len(edges) + 1} cumulative counts (one per edge plus "
                         f"+Inf), got {len(cumulative)}")
    return np.asarray(edges, float)


# ---------------------------------------------------------------------------------- snapshots
# Columns of the per-pod matrix: gauges, then counters, TTFT and ITL cumulative buckets (the
# counters, from _SUCCESS on, only grow while a pod lives).
_INFLIGHT, _RUNNING, _WAITING, _KV, _SUCCESS, _PROMPT, _GENERATION = range(7)
_HIST0 = 7


class _Arrays:
    """One snapshot as arrays, pods in rows (computed once per snapshot)."""

    __slots__ = ("draining", "free_gpus", "itl_edges", "member", "names", "npods", "pending",
                 "pool_sums", "ready", "rows", "starting", "time_s", "ttft_edges", "values",
                 "weight")

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
        self.ready, self.starting, self.pending, self.draining, self.weight = status
        free = snapshot.free_gpus
        self.free_gpus = np.array([free.get(p.gpu_type, 0) for p in config.pools], float)

        pods = [(index[p.pool], p) for p in snapshot.pods if p.pool in index]
        self.names = [p.pod for _, p in pods]
        self.rows = {name: row for row, name in enumerate(self.names)}
        if len(self.rows) != len(self.names):
            raise ValueError(f"snapshot at t={snapshot.time_s}: pod names are not unique")
        self.ttft_edges, self.itl_edges = _snapshot_edges([p for _, p in pods], snapshot.time_s)
        self.values = np.array(
            [(p.num_requests_running + p.num_requests_waiting, p.num_requests_running,
              p.num_requests_waiting, p.kv_cache_usage_perc, p.request_success_total,
              p.prompt_tokens_total, p.generation_tokens_total,
              *p.time_to_first_token_seconds.cumulative, *p.inter_token_latency_seconds.cumulative)
             for _, p in pods], float).reshape(len(pods), _HIST0 + len(self.ttft_edges)
                                               + len(self.itl_edges) + 2)
        self.member = np.zeros((npools, len(pods)))
        self.member[np.array([i for i, _ in pods], dtype=np.intp), np.arange(len(pods))] = 1.0
        self.pool_sums = self.member @ self.values
        self.npods = self.member.sum(axis=1)


def _snapshot_edges(pods: list[PodSample], time_s: float
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
class _Interval:
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


def _interval(prev: _Arrays | None, cur: _Arrays, config: ObservationConfig,
              full: bool) -> _Interval:
    npools = len(config.pools)
    k_ttft = len(cur.ttft_edges) + 1
    if prev is None or cur.time_s == prev.time_s:
        zeros = np.zeros(npools)
        nan3 = np.full((npools, 3), np.nan)
        nan1 = np.full(npools, np.nan)
        return _Interval(zeros, zeros, zeros, zeros, zeros, nan3, nan3, nan1, nan1)
    dt = cur.time_s - prev.time_s
    if dt < 0:
        raise ValueError(f"snapshots out of order: t={prev.time_s} comes before t={cur.time_s}")
    delta = cur.pool_sums
    same_buckets = (prev.ttft_edges == cur.ttft_edges and prev.itl_edges == cur.itl_edges)
    if same_buckets and prev.names:
        lookup = prev.rows.get
        matched = np.array([lookup(name, -1) for name in cur.names], dtype=np.intp)
        keep = np.flatnonzero(matched >= 0)
        if keep.size:
            before = prev.values[matched[keep]].copy()
            after = cur.values[keep]
            # A counter that went down was reset: its growth is its current value. Judged per
            # series (as Prometheus's rate() does), so one odd series cannot turn a whole
            # pod's cumulative counts into one interval's growth; a reset of the request
            # counter is a restart, whose gauges start afresh too.
            reset = after[:, _SUCCESS:] < before[:, _SUCCESS:]
            before[:, _SUCCESS:][reset] = 0.0
            before[reset[:, 0], :_SUCCESS] = 0.0
            delta = delta - cur.member[:, keep] @ before
    arrival = np.maximum(delta[:, _SUCCESS] + delta[:, _INFLIGHT], 0.0) / dt
    observed = delta[:, _HIST0 + k_ttft - 1]
    if not full:
        nan3 = np.full((npools, 3), np.nan)
        nan1 = np.full(npools, np.nan)
        latencies = (nan3, nan3, nan1, nan1)
    else:
        ttft = delta[:, _HIST0:_HIST0 + k_ttft]
        itl = delta[:, _HIST0 + k_ttft:]
        ttft_edges = np.asarray(cur.ttft_edges)
        itl_edges = np.asarray(cur.itl_edges)
        latencies = (_quantiles(ttft_edges, ttft, _QUANTILES),
                     _quantiles(itl_edges, itl, _QUANTILES),
                     _fraction_above(ttft_edges, ttft, config.slo_ttft_s),
                     _fraction_above(itl_edges, itl, config.slo_itl_s))
    return _Interval(arrival, delta[:, _SUCCESS] / dt, delta[:, _PROMPT] / dt,
                     delta[:, _GENERATION] / dt, observed, *latencies)


def _routing_share(cur: _Arrays) -> FloatArray:
    return np.asarray(traffic_shares(cur.weight.tolist(), (cur.ready > 0).tolist()))


def interval_stats(prev: ClusterSnapshot | None, cur: ClusterSnapshot,
                   config: ObservationConfig) -> tuple[PoolInterval, ...]:
    """What happened in each pool (config order) between ``prev`` and ``cur``.

    With ``prev`` None (or at the same time) rates are 0 and latencies NaN. Raises
    ValueError if ``prev`` is newer than ``cur`` or a pool has no status in a snapshot.
    """
    index = {p.name: i for i, p in enumerate(config.pools)}
    after = _Arrays(cur, config, index)
    stats = _interval(None if prev is None else _Arrays(prev, config, index), after, config,
                      full=True)
    ready = np.maximum(after.ready, 1.0)
    share = _routing_share(after)
    kv = after.pool_sums[:, _KV] / np.maximum(after.npods, 1.0)
    return tuple(
        PoolInterval(
            pool=pool.name,
            arrival_rps=float(stats.arrival_rps[i]),
            prompt_tokens_per_s=float(stats.prompt_tokens_per_s[i]),
            generation_tokens_per_s=float(stats.generation_tokens_per_s[i]),
            completions_rps=float(stats.completions_rps[i]),
            running_per_replica=float(after.pool_sums[i, _RUNNING] / ready[i]),
            waiting_per_replica=float(after.pool_sums[i, _WAITING] / ready[i]),
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


# ---------------------------------------------------------------------------------- builder
POOL_FEATURES: tuple[tuple[str, str, float, float], ...] = (
    ("ready_frac", "ready replicas / max_replicas", 0.0, 10.0),
    ("starting_frac", "starting replicas / max_replicas", 0.0, 10.0),
    ("pending_frac", "pending replicas / max_replicas", 0.0, 10.0),
    ("draining_frac", "draining replicas / max_replicas", 0.0, 10.0),
    ("arrival_short", "req/s (short window) / (capacity_rps x max_replicas)", 0.0, 10.0),
    ("arrival_long", "req/s (long window) / (capacity_rps x max_replicas)", 0.0, 10.0),
    ("prompt_tokens", "log1p(prompt tokens/s / (max_replicas x max_num_seqs / slo_itl_s))",
     0.0, 10.0),
    ("generation_tokens",
     "log1p(generation tokens/s / (max_replicas x max_num_seqs / slo_itl_s))", 0.0, 10.0),
    ("running", "running requests / max(ready, 1) / max_num_seqs", 0.0, 10.0),
    ("waiting", "log1p(waiting requests / max(ready, 1)) / log1p(max_num_seqs)", 0.0, 10.0),
    ("kv_cache_usage", "fraction of KV-cache blocks in use (mean over pods)", 0.0, 1.0),
    ("ttft_p50", "TTFT p50 s / slo_ttft_s", 0.0, 10.0),
    ("ttft_p90", "TTFT p90 s / slo_ttft_s", 0.0, 10.0),
    ("ttft_p99", "TTFT p99 s / slo_ttft_s", 0.0, 10.0),
    ("itl_p50", "inter-token latency p50 s / slo_itl_s", 0.0, 10.0),
    ("itl_p90", "inter-token latency p90 s / slo_itl_s", 0.0, 10.0),
    ("ttft_slo_violation", "fraction of TTFTs > slo_ttft_s", 0.0, 1.0),
    ("itl_slo_violation", "fraction of inter-token gaps > slo_itl_s", 0.0, 1.0),
    ("has_traffic", "1 if the interval has TTFT observations, else 0", 0.0, 1.0),
    ("routing_share", "weight / sum of weights of pools with ready replicas", 0.0, 1.0),
    ("free_gpus", "free GPUs of its type / gpu_inventory", 0.0, 1.0),
    ("price", "price_per_replica_hour / max over pools", 0.0, 1.0),
)
"""Per-pool entries: (name, unit, low, high), in observation order."""

GLOBAL_FEATURES: tuple[tuple[str, str, float, float], ...] = (
    ("arrival_short", "total req/s (short window) / sum of capacity_rps x max_replicas",
     0.0, 10.0),
    ("arrival_long", "total req/s (long window) / sum of capacity_rps x max_replicas", 0.0, 10.0),
    ("time_of_day_sin", "sin(2 pi (time_s mod day_length_s) / day_length_s)", -1.0, 1.0),
    ("time_of_day_cos", "cos(2 pi (time_s mod day_length_s) / day_length_s)", -1.0, 1.0),
)
"""Global entries after the pools': (name, unit, low, high)."""


class ObservationBuilder:
    """Builds the observation vector (see the module docstring) from a snapshot history.

    Attributes:
        names / units: one per entry (``<pool>/<feature>``, then the global ones).
        low / high: ``float32`` bounds of every entry (values are clipped to them).
        size: number of entries, ``22 × pools + 4``.
    """

    def __init__(self, config: ObservationConfig) -> None:
        self.config = config
        pools = config.pools
        self._index = {p.name: i for i, p in enumerate(pools)}
        self.names: tuple[str, ...] = tuple(
            [f"{p.name}/{f[0]}" for p in pools for f in POOL_FEATURES]
            + [f[0] for f in GLOBAL_FEATURES])
        self.units: tuple[str, ...] = tuple(
            [f[1] for _ in pools for f in POOL_FEATURES] + [f[1] for f in GLOBAL_FEATURES])
        self.low = np.array([f[2] for _ in pools for f in POOL_FEATURES]
                            + [f[2] for f in GLOBAL_FEATURES], np.float32)
        self.high = np.array([f[3] for _ in pools for f in POOL_FEATURES]
                             + [f[3] for f in GLOBAL_FEATURES], np.float32)
        self.size = len(self.names)
        self._low = self.low.astype(float)
        self._high = self.high.astype(float)
        max_replicas = np.array([p.max_replicas for p in pools], float)
        max_num_seqs = np.array([p.max_num_seqs for p in pools], float)
        self._max_replicas = max_replicas
        self._capacity = np.array([p.capacity_rps for p in pools], float) * max_replicas
        self._token_scale = max_replicas * max_num_seqs / config.slo_itl_s
        self._max_num_seqs = max_num_seqs
        self._log_max_num_seqs = np.log1p(max_num_seqs)
        self._inventory = np.maximum([p.gpu_inventory for p in pools], 1.0)
        prices = np.array([p.price_per_replica_hour for p in pools], float)
        self._price = prices / prices.max() if prices.max() > 0 else np.zeros_like(prices)
        self._total_capacity = float(self._capacity.sum())
        self._cache: dict[int, tuple[ClusterSnapshot, _Arrays]] = {}

    def __getstate__(self) -> dict[str, object]:
        """Pickle (for subprocess vector envs) without the per-snapshot cache: it is keyed by
        object ids, which mean nothing in another process."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _arrays(self, snapshot: ClusterSnapshot) -> _Arrays:
        """The snapshot as arrays, computed once while it stays in the observed window."""
        entry = self._cache.get(id(snapshot))
        if entry is not None and entry[0] is snapshot:
            return entry[1]
        arrays = _Arrays(snapshot, self.config, self._index)
        self._cache[id(snapshot)] = (snapshot, arrays)
        return arrays

    def observe(self, history: Sequence[ClusterSnapshot]) -> npt.NDArray[np.float32]:
        """The observation after the last snapshot of ``history`` (oldest first).

        Raises:
            ValueError: empty history, snapshots out of time order, or a pool of the config
                without status in a snapshot.
        """
        if len(history) == 0:
            raise ValueError("observe: the history is empty; pass at least one snapshot")
        last = len(history) - 1
        cur_snapshot = history[last]
        window = {id(cur_snapshot)}
        long_ref = 0
        target = cur_snapshot.time_s - self.config.long_window_s
        for i in range(last - 1, -1, -1):
            window.add(id(history[i]))
            if history[i].time_s <= target:
                long_ref = i
                break
        cur = self._arrays(cur_snapshot)
        prev = self._arrays(history[last - 1]) if last >= 1 else None
        short = _interval(prev, cur, self.config, full=True)
        if long_ref == last - 1 or last == 0:
            long_arrival = short.arrival_rps
        else:
            long_arrival = _interval(self._arrays(history[long_ref]), cur, self.config,
                                     full=False).arrival_rps
        if len(self._cache) > len(window) + 8:
            self._cache = {k: v for k, v in self._cache.items() if k in window}
        return self._vector(cur, short, long_arrival)

    def _vector(self, cur: _Arrays, short: _Interval,
                long_arrival: FloatArray) -> npt.NDArray[np.float32]:
        ready = np.maximum(cur.ready, 1.0)
        max_replicas = self._max_replicas
        columns = (
            cur.ready / max_replicas,
            cur.starting / max_replicas,
            cur.pending / max_replicas,
            cur.draining / max_replicas,
            short.arrival_rps / self._capacity,
            long_arrival / self._capacity,
            np.log1p(short.prompt_tokens_per_s / self._token_scale),
            np.log1p(short.generation_tokens_per_s / self._token_scale),
            cur.pool_sums[:, _RUNNING] / ready / self._max_num_seqs,
            np.log1p(cur.pool_sums[:, _WAITING] / ready) / self._log_max_num_seqs,
            cur.pool_sums[:, _KV] / np.maximum(cur.npods, 1.0),
            *(short.ttft_q / self.config.slo_ttft_s).T,
            *(short.itl_q[:, :2] / self.config.slo_itl_s).T,
            short.ttft_violation,
            short.itl_violation,
            (short.observed > 0).astype(float),
            _routing_share(cur),
            cur.free_gpus / self._inventory,
            self._price,
        )
        phase = 2.0 * math.pi * (cur.time_s % self.config.day_length_s) / self.config.day_length_s
        out = np.concatenate([
            np.stack(columns, axis=1).ravel(),
            [short.arrival_rps.sum() / self._total_capacity,
             long_arrival.sum() / self._total_capacity, math.sin(phase), math.cos(phase)],
        ])
        out[np.isnan(out)] = 0.0
        np.clip(out, self._low, self._high, out=out)
        return out.astype(np.float32)
