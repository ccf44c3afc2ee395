"""Fault injection for an episode: pod crashes, lost nodes, slow cold starts, failed scrapes.

Faults are scheduled on the cluster with module-level functions (not lambdas) so that an
environment holding a scheduled fault can still be pickled.
"""

from __future__ import annotations

import functools

import numpy as np

from rlscale.envs.config import FaultConfig
from rlscale.sim.backend import AnyCluster
from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import PodPhase


def crash_random_ready_pod(cluster: Cluster) -> None:
    """Crash one ready pod chosen at random (the Deployment recreates it)."""
    ready = [p for pods in cluster.pool_pods for p in pods if p.phase == PodPhase.READY]
    if ready:
        cluster.crash_pod(ready[int(cluster.rng.integers(len(ready)))])
        cluster.fault_log.append((cluster.now_s, "pod_crash"))


def lose_node(gpu_type: str, gpus: int, duration_s: float, cluster: Cluster) -> None:
    """A node with ``gpus`` GPUs of ``gpu_type`` disappears for ``duration_s`` seconds."""
    lost = min(gpus, cluster.gpu_total[gpu_type])
    if lost <= 0:
        return
    cluster.lose_gpus(gpu_type, lost)
    cluster.fault_log.append((cluster.now_s, f"node_loss:{gpu_type}:{lost}"))
    cluster.schedule(cluster.now_s + duration_s,
                     functools.partial(restore_node, gpu_type, lost))


def restore_node(gpu_type: str, gpus: int, cluster: Cluster) -> None:
    """The lost node is replaced."""
    cluster.restore_gpus(gpu_type, gpus)
    cluster.fault_log.append((cluster.now_s, f"node_restored:{gpu_type}:{gpus}"))


def _poisson_times(rate_per_hour: float, duration_s: float,
                   rng: np.random.Generator) -> list[float]:
    if rate_per_hour <= 0:
        return []
    count = int(rng.poisson(rate_per_hour * duration_s / 3600.0))
    return sorted(float(t) for t in rng.uniform(0.0, duration_s, count))


def schedule_faults(cluster: Cluster, faults: FaultConfig, duration_s: float,
                    rng: np.random.Generator) -> None:
    """Draw this episode's faults from ``rng`` and schedule them on ``cluster``."""
    for at_s in _poisson_times(faults.pod_crash_per_hour, duration_s, rng):
        cluster.schedule(at_s, crash_random_ready_pod)
    for at_s in _poisson_times(faults.node_loss_per_hour, duration_s, rng):
        pool = cluster.pools[int(rng.integers(len(cluster.pools)))]
        cluster.schedule(at_s, functools.partial(
            lose_node, pool.gpu_type, faults.node_gpus, faults.node_loss_duration_s))
    slow_cold_starts(cluster, faults, rng)


def slow_cold_starts(cluster: AnyCluster, faults: FaultConfig, rng: np.random.Generator) -> None:
    """With ``slow_cold_start_prob``, one random pool's cold starts take
    ``slow_cold_start_factor`` times longer this episode (either engine)."""
    if faults.slow_cold_start_prob > 0 and rng.random() < faults.slow_cold_start_prob:
        pool_index = int(rng.integers(len(cluster.pools)))
        cluster.cold_start_factor[pool_index] = faults.slow_cold_start_factor
        cluster.fault_log.append((0.0, f"slow_cold_start:{cluster.pools[pool_index].name}"))
