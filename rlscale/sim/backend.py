"""The two engines behind one surface: ``request`` (the request-level, event-driven cluster)
and ``fast`` (pods and routing the same, engines as fluids; see :mod:`rlscale.sim.fluid`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from rlscale.metrics.snapshot import ClusterSnapshot
from rlscale.sim.cluster import Cluster
from rlscale.sim.export import cluster_snapshot
from rlscale.sim.fluid import FluidCluster, fluid_snapshot
from rlscale.sim.pod import PodPhase
from rlscale.sim.spec import ClusterSpec
from rlscale.sim.workload.workload import Workload

MODES = ("request", "fast")
"""Engine modes: ``request`` simulates every request through vLLM's scheduler; ``fast``
approximates each pool's engines as a fluid (8-10x fewer CPU-seconds per environment step on
the default scenario; ``benchmarks/env_speed.py``)."""

AnyCluster = Cluster | FluidCluster


def make_cluster(mode: str, spec: ClusterSpec, workload: Workload, rng: np.random.Generator,
                 *, step_by_step: bool = False) -> AnyCluster:
    """A cluster of the given engine ``mode`` (one of :data:`MODES`)."""
    if mode == "request":
        return Cluster(spec, workload, rng, step_by_step=step_by_step)
    if mode == "fast":
        return FluidCluster(spec, workload, rng)
    raise ValueError(f"engine mode must be one of {MODES}, got {mode!r}")


def snapshot_of(cluster: AnyCluster, offset_s: float = 0.0) -> ClusterSnapshot:
    """The metrics snapshot of either cluster at its current time, stamped ``offset_s``
    seconds later (where the episode sits in the workload's day)."""
    time_s = cluster.now_s + offset_s
    if isinstance(cluster, FluidCluster):
        return fluid_snapshot(cluster, time_s)
    return dataclasses.replace(cluster_snapshot(cluster), time_s=time_s)


def ready_counts(cluster: AnyCluster) -> list[int]:
    """Ready replicas per pool."""
    if isinstance(cluster, FluidCluster):
        return cluster.ready_counts()
    return [sum(1 for p in pods if p.engine is not None and p.phase == PodPhase.READY)
            for pods in cluster.pool_pods]
