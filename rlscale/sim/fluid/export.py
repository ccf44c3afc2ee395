"""The fluid cluster's state as the metrics snapshot a real cluster would show."""

from __future__ import annotations

import numpy as np

from rlscale.metrics.snapshot import ClusterSnapshot, PodCounters, PodSample, PoolStatus
from rlscale.metrics.vllm import ITL_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.sim.fluid.cluster import FluidCluster
from rlscale.sim.fluid.metrics import PodShares


class FluidSnapshot(ClusterSnapshot):
    """A snapshot of the fast engine: its pods' numbers as :class:`PodCounters` (what the
    observation reads, without making and reading back :class:`PodSample` records), and
    :attr:`pods` made from the same numbers when first read (a heuristic's scrape).

    Made by :func:`fluid_snapshot`; built with the dataclass's fields (as
    ``dataclasses.replace`` does) it is a plain snapshot of those fields, counters then made
    from its pods like anyone's.
    """

    def __init__(self, time_s: float, pools: tuple[PoolStatus, ...],
                 pods: tuple[PodSample, ...], free_gpus: dict[str, int]) -> None:
        self._set(time_s, pools, free_gpus, pods, None, None)

    def _set(self, time_s: float, pools: tuple[PoolStatus, ...], free_gpus: dict[str, int],
             pods: tuple[PodSample, ...] | None, shares: tuple[PodShares, ...] | None,
             counters: PodCounters | None) -> None:
        for name, value in (("time_s", time_s), ("pools", pools), ("free_gpus", free_gpus),
                            ("_pods", pods), ("_shares", shares), ("_counters", counters)):
            object.__setattr__(self, name, value)

    @classmethod
    def of_shares(cls, time_s: float, pools: tuple[PoolStatus, ...],
                  free_gpus: dict[str, int], shares: tuple[PodShares, ...]) -> FluidSnapshot:
        """The snapshot of pools whose pods export ``shares`` (one per pool)."""
        counters = PodCounters(
            tuple(name for s in shares for name in s.names),
            tuple(s.pool for s in shares for _ in s.names), TTFT_BUCKETS_S, ITL_BUCKETS_S,
            np.concatenate([s.rows() for s in shares]))
        snapshot = cls.__new__(cls)
        snapshot._set(time_s, pools, free_gpus, None, shares, counters)
        return snapshot

    @property
    def pods(self) -> tuple[PodSample, ...]:
        """Every serving pod's sample (made from the counters when first read)."""
        pods: tuple[PodSample, ...] | None = self.__dict__["_pods"]
        if pods is None:
            shares: tuple[PodShares, ...] = self.__dict__["_shares"]
            pods = tuple(sample for s in shares for sample in s.samples())
            object.__setattr__(self, "_pods", pods)
        return pods

    def counters(self) -> PodCounters | None:
        """The pods' counters, as the engine made them (``None`` if built from samples)."""
        counters: PodCounters | None = self.__dict__["_counters"]
        return counters


def fluid_snapshot(cluster: FluidCluster, time_s: float | None = None) -> FluidSnapshot:
    """Every pool's Deployment status and its pods' metrics at ``cluster.now_s`` (the pool's
    work shared evenly among its serving pods, see :mod:`rlscale.sim.fluid.metrics`), stamped
    ``time_s`` (default ``cluster.now_s``; seconds)."""
    pools: list[PoolStatus] = []
    shares: list[PodShares] = []
    for index, (spec, counts) in enumerate(zip(cluster.pools, cluster.pod_counts(),
                                               strict=True)):
        ready, starting, pending, draining = counts
        pools.append(PoolStatus(
            pool=spec.name, desired_replicas=cluster.desired[index], ready_replicas=ready,
            starting_replicas=starting, pending_replicas=pending, draining_replicas=draining,
            routing_weight=cluster.router.weights[index], gpu_type=spec.gpu_type,
            gpus_per_replica=spec.gpus_per_replica))
        shares.append(cluster.metrics[index].export(cluster.fluids[index],
                                                    cluster.pool_pods[index]))
    return FluidSnapshot.of_shares(cluster.now_s if time_s is None else time_s, tuple(pools),
                                   dict(cluster.gpu_free), tuple(shares))
