"""What a fluid pool's pods would export on ``/metrics``: vLLM's gauges, counters and latency
histograms (vLLM's bucket edges), one sample per ready or draining pod.

The fluid does not know which pod served a request, so a pool's work is shared equally among
the pods serving when a snapshot is taken: each pod's counters and histogram buckets grow by
the pool's growth since the last snapshot over the number of serving pods (a pod that appears
starts from 0, as a new vLLM process does), and its gauges are the pool's over that number.
Per-pod readers (an HPA averaging a metric over pods) and per-pool readers (the observation
builder's sums and means) then see what they would see from evenly balanced replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rlscale.metrics.snapshot import (
    GENERATION,
    HIST0,
    INFLIGHT,
    KV,
    RUNNING,
    SUCCESS,
    WAITING,
    HistogramData,
    PodSample,
)
from rlscale.metrics.vllm import E2E_BUCKETS_S, ITL_BUCKETS_S, QUEUE_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.sim.fluid.kernels import jit_enabled, observe_compiled
from rlscale.sim.fluid.pool import FluidPool
from rlscale.sim.pod import Pod, PodPhase

_EDGES = {"ttft": TTFT_BUCKETS_S, "itl": ITL_BUCKETS_S, "e2e": E2E_BUCKETS_S,
          "queue": QUEUE_BUCKETS_S}
# Layout of a pool's counter vector: success, prompt tokens, generation tokens, then each
# histogram's bucket counts (non-cumulative, +Inf last), then the four histograms' sums.
_SUCCESS, _PROMPT, _GENERATION = range(3)
_SLICES: dict[str, slice] = {}
_offset = 3
for _name, _edges in _EDGES.items():
    _SLICES[_name] = slice(_offset, _offset + len(_edges) + 1)
    _offset += len(_edges) + 1
_EDGE_ARRAYS = {name: np.array(edges) for name, edges in _EDGES.items()}
_SUMS = {name: _offset + i for i, name in enumerate(_EDGES)}
_SIZE = _offset + len(_EDGES)
# The same layout as kernels.observe_histograms reads it (its order of histograms).
_KERNEL_ORDER = ("ttft", "queue", "e2e", "itl")
_EDGES_FLAT = np.concatenate([_EDGE_ARRAYS[name] for name in _KERNEL_ORDER])
_EDGE_BOUNDS = np.cumsum([0] + [len(_EDGES[name]) for name in _KERNEL_ORDER])
_FIRST_BUCKET = np.array([_SLICES[name].start for name in _KERNEL_ORDER])
_SUM_INDEX = np.array([_SUMS[name] for name in _KERNEL_ORDER])


class PoolMetrics:
    """A pool's engine totals since the simulation started, and its pods' shares of them."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.totals = np.zeros(_SIZE)
        """The pool's counters (layout above); the fluid's token counters are copied in."""
        self._exported = np.zeros(_SIZE)
        self._share = np.zeros(_SIZE)
        self._bases: dict[int, NDArray[np.float64]] = {}

    def observe_engine(self, fluid: FluidPool, ttft_s: NDArray[np.float64],
                       queue_s: NDArray[np.float64], e2e_s: NDArray[np.float64]) -> None:
        """Record a step's first tokens (TTFT and queue time from dispatch, s), finished
        requests (end-to-end s) and the fluid's engine steps (inter-token gaps, s)."""
        if jit_enabled():
            itl_s, itl_weights = np.array(fluid.itl_values), np.array(fluid.itl_weights)
            fluid.itl_values.clear()
            fluid.itl_weights.clear()
            observe_compiled(self.totals, _EDGES_FLAT, _EDGE_BOUNDS, _FIRST_BUCKET, _SUM_INDEX,
                             ttft_s, queue_s, e2e_s, itl_s, itl_weights)
            if len(itl_s):
                self.totals[_SUMS["itl"]] += float(itl_s @ itl_weights)
        else:
            self._observe_plain(fluid, ttft_s, queue_s, e2e_s)
        self.totals[_SUCCESS] += len(e2e_s)
        self.totals[_PROMPT] = fluid.prompt_tokens_total
        self.totals[_GENERATION] = fluid.generation_tokens_total

    def _observe_plain(self, fluid: FluidPool, ttft_s: NDArray[np.float64],
                       queue_s: NDArray[np.float64], e2e_s: NDArray[np.float64]) -> None:
        """:meth:`observe_engine`'s histograms with numpy."""
        self._observe("ttft", ttft_s, None)
        self._observe("queue", queue_s, None)
        self._observe("e2e", e2e_s, None)
        if fluid.itl_values:
            self._observe("itl", np.array(fluid.itl_values), np.array(fluid.itl_weights))
            fluid.itl_values.clear()
            fluid.itl_weights.clear()

    def _observe(self, name: str, values: NDArray[np.float64],
                 weights: NDArray[np.float64] | None) -> None:
        if not len(values):
            return
        edges = _EDGE_ARRAYS[name]
        bucket = np.searchsorted(edges, values, side="left")
        self.totals[_SLICES[name]] += np.bincount(bucket, weights, len(edges) + 1)
        self.totals[_SUMS[name]] += float(values @ weights if weights is not None
                                          else values.sum())

    def export(self, fluid: FluidPool, pods: list[Pod]) -> PodShares:
        """What the pool's ready and draining pods (of ``pods``, the pool's, in creation
        order) export now: each one's share of the pool's growth since the last export."""
        serving = [p for p in pods if p.phase in (PodPhase.READY, PodPhase.DRAINING)]
        growth = self.totals - self._exported
        self._exported = self.totals.copy()
        if not serving:
            self._bases.clear()
            return PodShares(self.pool, (), (), np.zeros((0, _SIZE)), 0, 0, 0.0)
        before = self._share.copy()
        self._share = self._share + growth / len(serving)
        live = {p.id for p in serving}
        self._bases = {k: v for k, v in self._bases.items() if k in live}
        for pod in serving:
            self._bases.setdefault(pod.id, before)
        counters = self._share - np.stack([self._bases[p.id] for p in serving])
        running, waiting, usage = fluid.gauges(len(serving))
        return PodShares(self.pool, tuple(p.name for p in serving),
                         tuple(p.phase == PodPhase.READY for p in serving), counters,
                         round(running / len(serving)), round(waiting / len(serving)), usage)


@dataclass(frozen=True)
class PodShares:
    """One pool's serving pods' metrics at one export: ``counters`` (pods x the pool
    counter layout, unrounded), and the gauges every pod shows (requests running and
    waiting, KV-cache usage fraction)."""

    pool: str
    names: tuple[str, ...]
    ready: tuple[bool, ...]
    counters: NDArray[np.float64]
    running: int
    waiting: int
    usage: float

    def _buckets(self, name: str) -> NDArray[np.float64]:
        """Cumulative bucket counts of histogram ``name``, pods in rows, as the pods show
        them (whole numbers; ``+ 0.0`` keeps a rounded ``-0.0`` from reaching anyone)."""
        return np.rint(np.cumsum(self.counters[:, _SLICES[name]], axis=1)) + 0.0

    def rows(self) -> NDArray[np.float64]:
        """The pods' :class:`~rlscale.metrics.snapshot.PodCounters` rows: the numbers of
        :meth:`samples`, in that layout."""
        ttft, itl = self._buckets("ttft"), self._buckets("itl")
        out = np.empty((len(self.names), HIST0 + ttft.shape[1] + itl.shape[1]))
        out[:, INFLIGHT] = self.running + self.waiting
        out[:, RUNNING] = self.running
        out[:, WAITING] = self.waiting
        out[:, KV] = self.usage
        out[:, SUCCESS:GENERATION + 1] = np.rint(self.counters[:, :3]) + 0.0
        out[:, HIST0:HIST0 + ttft.shape[1]] = ttft
        out[:, HIST0 + ttft.shape[1]:] = itl
        return out

    def samples(self) -> list[PodSample]:
        """One :class:`~rlscale.metrics.snapshot.PodSample` per pod."""
        hists = [[HistogramData(edges, tuple(row), total) for row, total in zip(
                      self._buckets(name).astype(np.int64).tolist(),
                      self.counters[:, _SUMS[name]].tolist(), strict=True)]
                 for name, edges in _EDGES.items()]
        scalars = np.rint(self.counters[:, :3]).astype(np.int64).tolist()
        return [PodSample(
                    pod=name,
                    pool=self.pool,
                    num_requests_running=self.running,
                    num_requests_waiting=self.waiting,
                    kv_cache_usage_perc=self.usage,
                    prompt_tokens_total=prompt,
                    generation_tokens_total=generation,
                    num_preemptions_total=0,
                    request_success_total=success,
                    time_to_first_token_seconds=ttft,
                    inter_token_latency_seconds=itl,
                    e2e_request_latency_seconds=e2e,
                    request_queue_time_seconds=queue,
                    ready=ready)
                for name, ready, (success, prompt, generation), ttft, itl, e2e, queue in zip(
                    self.names, self.ready, scalars, *hists, strict=True)]
