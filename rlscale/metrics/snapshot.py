"""The metrics snapshot: one scrape of every vLLM pod plus the Deployments' status.

Only what a real cluster exposes is here: vLLM's ``/metrics`` (gauges, counters, histograms
with vLLM's bucket edges) per pod, and each Deployment's desired / ready / starting / pending
replicas, the HTTPRoute weight, and free GPUs per type from the nodes' allocatable resources.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class HistogramData:
    """A Prometheus histogram at one instant.

    ``edges`` are the finite upper bounds (``le``) in seconds; ``cumulative`` has one more entry
    than ``edges`` (the ``+Inf`` bucket, equal to the count); ``sum`` is in seconds.
    """

    edges: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    def __post_init__(self) -> None:
        if len(self.cumulative) != len(self.edges) + 1:
            raise ValueError(
                f"histogram: expected {len(self.edges) + 1} cumulative counts "
                f"(one per edge plus +Inf), got {len(self.cumulative)}"
            )

    @property
    def count(self) -> int:
        """Number of observations."""
        return self.cumulative[-1]


@dataclass(frozen=True)
class PodSample:
    """One vLLM pod's metrics (names follow vLLM's ``vllm:`` metrics without the prefix).

    Gauges: requests running and waiting (counts), KV-cache usage (fraction 0-1, as vLLM's
    ``kv_cache_usage_perc`` reports it despite the name). Counters are totals since the pod
    started. Histograms: time to first token, inter-token latency, end-to-end latency and
    queue time, in seconds, measured by the engine from the request's arrival at the pod.
    """

    pod: str
    pool: str
    num_requests_running: int
    num_requests_waiting: int
    kv_cache_usage_perc: float
    prompt_tokens_total: int
    generation_tokens_total: int
    num_preemptions_total: int
    request_success_total: int
    time_to_first_token_seconds: HistogramData
    inter_token_latency_seconds: HistogramData
    e2e_request_latency_seconds: HistogramData
    request_queue_time_seconds: HistogramData
    ready: bool = True
    """False for a pod that is terminating (draining after a scale-down): still scraped, as
    its running requests finish, but no longer receiving traffic (from the pod's status)."""


@dataclass(frozen=True)
class PoolStatus:
    """One pool's Deployment status and routing weight.

    ``starting_replicas`` are scheduled but not ready (cold-starting); ``pending_replicas`` are
    unschedulable for lack of GPUs; ``draining_replicas`` are terminating after a scale-down.
    ``routing_weight`` is the pool's HTTPRoute backendRef weight as configured (not normalized).
    """

    pool: str
    desired_replicas: int
    ready_replicas: int
    starting_replicas: int
    pending_replicas: int
    draining_replicas: int
    routing_weight: float
    gpu_type: str
    gpus_per_replica: int


# Columns of :attr:`PodCounters.values`: gauges, then counters, then the TTFT and the ITL
# cumulative buckets (the counters, from SUCCESS on, only grow while a pod lives).
INFLIGHT, RUNNING, WAITING, KV, SUCCESS, PROMPT, GENERATION = range(7)
HIST0 = 7


@dataclass(frozen=True)
class PodCounters:
    """What the observation reads of some pods' samples, as one array, pods in rows.

    ``values`` has the columns ``INFLIGHT`` (running + waiting), ``RUNNING``, ``WAITING``
    (requests), ``KV`` (KV-cache usage fraction), ``SUCCESS`` (requests), ``PROMPT`` and
    ``GENERATION`` (tokens), then the TTFT histogram's cumulative bucket counts (one per edge
    of ``ttft_edges``, seconds, then ``+Inf``) and the ITL histogram's (``itl_edges``): the
    :class:`PodSample` numbers, nothing else. ``names`` and ``pools`` name each row's pod and
    its pool.
    """

    names: tuple[str, ...]
    pools: tuple[str, ...]
    ttft_edges: tuple[float, ...]
    itl_edges: tuple[float, ...]
    values: NDArray[np.float64]

    def __post_init__(self) -> None:
        width = HIST0 + len(self.ttft_edges) + len(self.itl_edges) + 2
        if self.values.shape != (len(self.names), width) or len(self.pools) != len(self.names):
            raise ValueError(f"pod counters: expected {len(self.names)} pools and a "
                             f"{len(self.names)} x {width} array, got {len(self.pools)} pools "
                             f"and {self.values.shape}")


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything observed at ``time_s`` (seconds; simulated time or wall-clock epoch)."""

    time_s: float
    pools: tuple[PoolStatus, ...]
    pods: tuple[PodSample, ...]
    free_gpus: dict[str, int]

    def pods_of(self, pool: str) -> tuple[PodSample, ...]:
        """The samples of the pods in ``pool``."""
        return tuple(p for p in self.pods if p.pool == pool)

    def counters(self) -> PodCounters | None:
        """The pods' samples as :class:`PodCounters`, when whoever made the snapshot made
        them (the fast engine, which then makes :attr:`pods` from them only if asked);
        ``None`` here: readers build them from :attr:`pods`."""
        return None
