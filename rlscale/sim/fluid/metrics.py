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

import numpy as np
from numpy.typing import NDArray

from rlscale.metrics.snapshot import HistogramData, PodSample
from rlscale.metrics.vllm import E2E_BUCKETS_S, ITL_BUCKETS_S, QUEUE_BUCKETS_S, TTFT_BUCKETS_S
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
        self._observe("ttft", ttft_s, None)
        self._observe("queue", queue_s, None)
        self._observe("e2e", e2e_s, None)
        if fluid.itl_values:
            self._observe("itl", np.array(fluid.itl_values), np.array(fluid.itl_weights))
            fluid.itl_values.clear()
            fluid.itl_weights.clear()
        self.totals[_SUCCESS] += len(e2e_s)
        self.totals[_PROMPT] = fluid.prompt_tokens_total
        self.totals[_GENERATION] = fluid.generation_tokens_total

    def _observe(self, name: str, values: NDArray[np.float64],
                 weights: NDArray[np.float64] | None) -> None:
        if not len(values):
            return
        edges = _EDGE_ARRAYS[name]
        bucket = np.searchsorted(edges, values, side="left")
        self.totals[_SLICES[name]] += np.bincount(bucket, weights, len(edges) + 1)
        self.totals[_SUMS[name]] += float(values @ weights if weights is not None
                                          else values.sum())

    def samples(self, fluid: FluidPool, pods: list[Pod]) -> list[PodSample]:
        """One sample per ready or draining pod of ``pods`` (the pool's, in creation order)."""
        serving = [p for p in pods if p.phase in (PodPhase.READY, PodPhase.DRAINING)]
        growth = self.totals - self._exported
        self._exported = self.totals.copy()
        if not serving:
            self._bases.clear()
            return []
        before = self._share.copy()
        self._share = self._share + growth / len(serving)
        live = {p.id for p in serving}
        self._bases = {k: v for k, v in self._bases.items() if k in live}
        for pod in serving:
            self._bases.setdefault(pod.id, before)
        counters = self._share - np.stack([self._bases[p.id] for p in serving])
        hists = [[HistogramData(edges, tuple(row), total) for row, total in zip(
                      np.rint(np.cumsum(counters[:, _SLICES[name]], axis=1)).astype(
                          np.int64).tolist(),
                      counters[:, _SUMS[name]].tolist(), strict=True)]
                 for name, edges in _EDGES.items()]
        scalars = np.rint(counters[:, :3]).astype(np.int64).tolist()
        running, waiting, usage = fluid.gauges(len(serving))
        running_each, waiting_each = round(running / len(serving)), round(waiting / len(serving))
        return [PodSample(
                    pod=pod.name,
                    pool=self.pool,
                    num_requests_running=running_each,
                    num_requests_waiting=waiting_each,
                    kv_cache_usage_perc=usage,
                    prompt_tokens_total=prompt,
                    generation_tokens_total=generation,
                    num_preemptions_total=0,
                    request_success_total=success,
                    time_to_first_token_seconds=ttft,
                    inter_token_latency_seconds=itl,
                    e2e_request_latency_seconds=e2e,
                    request_queue_time_seconds=queue,
                    ready=pod.phase == PodPhase.READY)
                for pod, (success, prompt, generation), ttft, itl, e2e, queue in zip(
                    serving, scalars, *hists, strict=True)]
