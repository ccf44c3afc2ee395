"""The observation builder: one vector per control step, from metrics snapshots only.

The environment (on simulated snapshots) and the controller (on scraped ones) call the same
:meth:`ObservationBuilder.observe` on a history of
:class:`~rlscale.metrics.snapshot.ClusterSnapshot`, so a policy sees in the cluster exactly what
it saw in training, and nothing the cluster cannot show: vLLM gauges, counters and histograms per
pod, Deployment status, routing weights, free GPUs.

Rates, percentiles and SLO-violation fractions are computed as Prometheus would compute them,
from counter and histogram-bucket deltas (:mod:`~rlscale.metrics.intervals`,
:mod:`~rlscale.metrics.histograms`). The **short window** is the last two snapshots; the **long
window** runs from the newest snapshot at least ``long_window_s`` older than the last one (or
the oldest one) to the last.

Observation (``float32``, ``size = 22 × pools + 4``): for each pool ``<p>`` in config order its
22 entries, then 4 global ones. Each entry with its index, name, the unit of the measured
quantity, its range, and below it its formula (declared once in
:mod:`rlscale.metrics.features`), for the current feature version 2 (the config's
``feature_version``)::

    0   <p>/ready_frac            [replicas; 0 - 10]
        ready replicas / max_replicas
    1   <p>/starting_frac         [replicas; 0 - 10]
        starting replicas / max_replicas
    2   <p>/pending_frac          [replicas; 0 - 10]
        pending replicas / max_replicas
    3   <p>/draining_frac         [replicas; 0 - 10]
        draining replicas / max_replicas
    4   <p>/arrival_trend         [ratio; 0 - 10]
        req/s (short window) / req/s (long window); 0 without arrivals
    5   <p>/prefill_load          [tokens/s; 0 - 10]
        prompt tokens/s (short window) / (prefill_tok_s x max(ready, 1))
    6   <p>/prefill_load_long     [tokens/s; 0 - 10]
        prompt tokens/s (long window) / (prefill_tok_s x max(ready, 1))
    7   <p>/decode_load           [tokens/s; 0 - 10]
        generation tokens/s (short window) / (decode_tok_s x max(ready, 1))
    8   <p>/running               [requests; 0 - 10]
        running requests / max(ready, 1) / max_num_seqs
    9   <p>/waiting               [requests; 0 - 10]
        log1p(waiting requests / max(ready, 1)) / log1p(max_num_seqs)
    10  <p>/kv_cache_usage        [fraction; 0 - 1]
        fraction of KV-cache blocks in use (mean over pods)
    11  <p>/ttft_p50              [s; 0 - 10]
        TTFT p50 s / slo_ttft_s
    12  <p>/ttft_p90              [s; 0 - 10]
        TTFT p90 s / slo_ttft_s
    13  <p>/ttft_p99              [s; 0 - 10]
        TTFT p99 s / slo_ttft_s
    14  <p>/itl_p50               [s; 0 - 10]
        inter-token latency p50 s / slo_itl_s
    15  <p>/itl_p90               [s; 0 - 10]
        inter-token latency p90 s / slo_itl_s
    16  <p>/ttft_slo_violation    [fraction; 0 - 1]
        fraction of TTFTs > slo_ttft_s
    17  <p>/itl_slo_violation     [fraction; 0 - 1]
        fraction of inter-token gaps > slo_itl_s
    18  <p>/has_traffic           [flag; 0 - 1]
        1 if the interval has TTFT observations, else 0
    19  <p>/routing_share         [weight; 0 - 1]
        weight / sum of weights of pools with ready replicas
    20  <p>/free_gpus             [GPUs; 0 - 1]
        free GPUs of its type / gpu_inventory
    21  <p>/price                 [$/replica-hour; 0 - 1]
        price_per_replica_hour / max over pools
    g0  prefill_load              [tokens/s; 0 - 10]
        total prompt tokens/s (short window) / sum of prefill_tok_s x max_replicas
    g1  decode_load               [tokens/s; 0 - 10]
        total generation tokens/s (short window) / sum of decode_tok_s x max_replicas
    g2  time_of_day_sin           [s; -1 - 1]
        sin(2 pi (time_s mod day_length_s) / day_length_s)
    g3  time_of_day_cos           [s; -1 - 1]
        cos(2 pi (time_s mod day_length_s) / day_length_s)

**Load in tokens.** Version 2 measures each pool's load as the prompt and generated tokens its
pods count (vLLM's ``prompt_tokens_total`` and ``generation_tokens_total``) per second, over
the tokens/s its ready replicas can serve, from the pool's profile (stored in the config and the
bundle, never measured on the evaluated workload): ``prefill_tok_s`` = ``B / (overhead_s +
prefill_s_per_token x B)`` with ``B = max_num_batched_tokens`` (a step full of prompt chunks),
``decode_tok_s`` = ``n / (overhead_s + n x (decode_s_per_seq + context_s_per_token x 1024))``
with ``n`` the largest batch whose step fits the inter-token SLO, at most ``max_num_seqs`` and
the KV cache's sequences of 1,024 tokens (:mod:`rlscale.sim.capacity`). A pool at 80 % of its
prefill capacity reads 0.8 whatever the length mix; requests/s appear only as the ratio of the
short to the long window (``arrival_trend``). Version 1 (bundles trained before it) has
``arrival_short``, ``arrival_long`` (req/s over ``capacity_rps x max_replicas``),
``prompt_tokens`` and ``generation_tokens`` (``log1p`` of tokens/s over ``max_replicas x
max_num_seqs / slo_itl_s``) at indices 4-7, and total req/s over the short and long window at
g0-g1 (``feature_table(version=1)``).

Latencies and violations of an interval without observations are 0 (then ``has_traffic`` is 0);
every entry is clipped to its range. Replica ratios exceed 1 only if something else scales the
Deployment past ``max_replicas``. :attr:`ObservationBuilder.names` and
:attr:`ObservationBuilder.units` (the formulas) list every entry.

Running, waiting and KV usage sum (or average) over every pod in the snapshot, draining ones
included: the simulator exports them, so a controller must scrape terminating pods too. Pods and
statuses of pools the config does not name are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rlscale.metrics.features import FEATURE_VERSIONS
from rlscale.metrics.intervals import (
    FloatArray,
    IntervalArrays,
    PoolInterval,
    SnapshotArrays,
    interval_arrays,
    pool_intervals,
    routing_share,
)
from rlscale.metrics.observation_config import ObservationConfig
from rlscale.metrics.snapshot import KV, RUNNING, WAITING, ClusterSnapshot


class ObservationBuilder:
    """Builds the observation vector (see the module docstring) from a snapshot history.

    Attributes:
        names / units: one per entry (``<pool>/<feature>``, then the global ones); the units
            are the entries' formulas (:class:`~rlscale.metrics.features.Feature`).
        low / high: ``float32`` bounds of every entry (values are clipped to them).
        size: number of entries, ``22 × pools + 4``.
    """

    def __init__(self, config: ObservationConfig) -> None:
        self.config = config
        pools = config.pools
        self._index = {p.name: i for i, p in enumerate(pools)}
        pool_features, global_features = FEATURE_VERSIONS[config.feature_version]
        entries = [f for _ in pools for f in pool_features] + list(global_features)
        self.names: tuple[str, ...] = tuple(
            [f"{p.name}/{f.name}" for p in pools for f in pool_features]
            + [f.name for f in global_features])
        self.units: tuple[str, ...] = tuple(f.formula for f in entries)
        self.low = np.array([f.low for f in entries], np.float32)
        self.high = np.array([f.high for f in entries], np.float32)
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
        self._prefill = np.array([p.prefill_tok_s for p in pools], float)
        self._decode = np.array([p.decode_tok_s for p in pools], float)
        self._total_prefill = float((self._prefill * max_replicas).sum())
        self._total_decode = float((self._decode * max_replicas).sum())
        self._cache: dict[int, tuple[ClusterSnapshot, SnapshotArrays]] = {}
        self._short: tuple[ClusterSnapshot | None, ClusterSnapshot, IntervalArrays] | None = None
        self._pool_intervals: tuple[ClusterSnapshot | None, ClusterSnapshot,
                                    tuple[PoolInterval, ...]] | None = None

    def __getstate__(self) -> dict[str, object]:
        """Pickle (for subprocess vector envs) without the per-snapshot cache: it is keyed by
        object ids, which mean nothing in another process."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        state["_short"] = state["_pool_intervals"] = None
        return state

    def _arrays(self, snapshot: ClusterSnapshot) -> SnapshotArrays:
        """The snapshot as arrays, computed once while it stays in the observed window."""
        entry = self._cache.get(id(snapshot))
        if entry is not None and entry[0] is snapshot:
            return entry[1]
        arrays = SnapshotArrays(snapshot, self.config, self._index)
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
        short = self._short_interval(history[last - 1] if last >= 1 else None, cur_snapshot)
        if long_ref == last - 1 or last == 0:
            long = short
        else:
            long = interval_arrays(self._arrays(history[long_ref]), cur, self.config, full=False)
        if len(self._cache) > len(window) + 8:
            self._cache = {k: v for k, v in self._cache.items() if k in window}
        return self._vector(cur, short, long)

    def _load(self, cur: SnapshotArrays, short: IntervalArrays, long: IntervalArrays
              ) -> tuple[tuple[FloatArray, ...], tuple[float, float]]:
        """The load entries of the config's feature version: four per-pool columns (indices
        4-7) and two global values (g0, g1); see :data:`~rlscale.metrics.features.
        FEATURE_VERSIONS`."""
        if self.config.feature_version == 1:
            return ((short.arrival_rps / self._capacity, long.arrival_rps / self._capacity,
                     np.log1p(short.prompt_tokens_per_s / self._token_scale),
                     np.log1p(short.generation_tokens_per_s / self._token_scale)),
                    (short.arrival_rps.sum() / self._total_capacity,
                     long.arrival_rps.sum() / self._total_capacity))
        ready = np.maximum(cur.ready, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            trend = np.where(short.arrival_rps > 0, short.arrival_rps / long.arrival_rps, 0.0)
        return ((trend, short.prompt_tokens_per_s / (self._prefill * ready),
                 long.prompt_tokens_per_s / (self._prefill * ready),
                 short.generation_tokens_per_s / (self._decode * ready)),
                (short.prompt_tokens_per_s.sum() / self._total_prefill,
                 short.generation_tokens_per_s.sum() / self._total_decode))

    def intervals(self, prev: ClusterSnapshot | None,
                  cur: ClusterSnapshot) -> tuple[PoolInterval, ...]:
        """What happened in each pool between ``prev`` and ``cur``
        (:func:`~rlscale.metrics.intervals.interval_stats`), from the arrays :meth:`observe`
        computed for the same two snapshots when it did."""
        cached = self._pool_intervals
        if cached is not None and cached[0] is prev and cached[1] is cur:
            return cached[2]
        stats = pool_intervals(self._arrays(cur), self._short_interval(prev, cur), self.config)
        self._pool_intervals = (prev, cur, stats)
        return stats

    def _short_interval(self, prev: ClusterSnapshot | None,
                        cur: ClusterSnapshot) -> IntervalArrays:
        """The interval arrays in full between two snapshots, kept for the last pair asked."""
        cached = self._short
        if cached is not None and cached[0] is prev and cached[1] is cur:
            return cached[2]
        before = None if prev is None else self._arrays(prev)
        short = interval_arrays(before, self._arrays(cur), self.config, full=True)
        self._short = (prev, cur, short)
        return short

    def _vector(self, cur: SnapshotArrays, short: IntervalArrays,
                long: IntervalArrays) -> npt.NDArray[np.float32]:
        ready = np.maximum(cur.ready, 1.0)
        pool_load, global_load = self._load(cur, short, long)
        npools = len(ready)
        out = np.empty(self.size)
        tail = len(global_load) + 2  # the global entries, then the time of day's two
        table = out[:self.size - tail].reshape(npools, -1)  # pools in rows
        table[:, 0:4] = (cur.status[:4] / self._max_replicas).T  # ready .. draining
        for column, load in enumerate(pool_load, start=4):
            table[:, column] = load
        c = 4 + len(pool_load)  # the version's load entries end here
        table[:, c] = cur.pool_sums[:, RUNNING] / ready / self._max_num_seqs
        table[:, c + 1] = np.log1p(cur.pool_sums[:, WAITING] / ready) / self._log_max_num_seqs
        table[:, c + 2] = cur.pool_sums[:, KV] / np.maximum(cur.npods, 1.0)
        table[:, c + 3:c + 6] = short.ttft_q / self.config.slo_ttft_s
        table[:, c + 6:c + 8] = short.itl_q[:, :2] / self.config.slo_itl_s
        table[:, c + 8] = short.ttft_violation
        table[:, c + 9] = short.itl_violation
        table[:, c + 10] = short.observed > 0
        table[:, c + 11] = routing_share(cur)
        table[:, c + 12] = cur.free_gpus / self._inventory
        table[:, c + 13] = self._price
        phase = 2.0 * math.pi * (cur.time_s % self.config.day_length_s) / self.config.day_length_s
        out[self.size - tail:] = (*global_load, math.sin(phase), math.cos(phase))
        out[np.isnan(out)] = 0.0
        np.clip(out, self._low, self._high, out=out)
        return out.astype(np.float32)
