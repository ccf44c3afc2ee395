"""The fluid cluster's state as the metrics snapshot a real cluster would show."""

from __future__ import annotations

from rlscale.metrics.snapshot import ClusterSnapshot, PodSample, PoolStatus
from rlscale.sim.fluid.cluster import FluidCluster


def fluid_snapshot(cluster: FluidCluster) -> ClusterSnapshot:
    """Every pool's Deployment status and its pods' metrics at ``cluster.now_s`` (the pool's
    work shared evenly among its serving pods, see :mod:`rlscale.sim.fluid.metrics`)."""
    pools: list[PoolStatus] = []
    pods: list[PodSample] = []
    for index, (spec, counts) in enumerate(zip(cluster.pools, cluster.pod_counts(),
                                               strict=True)):
        ready, starting, pending, draining = counts
        pools.append(PoolStatus(
            pool=spec.name, desired_replicas=cluster.desired[index], ready_replicas=ready,
            starting_replicas=starting, pending_replicas=pending, draining_replicas=draining,
            routing_weight=cluster.router.weights[index], gpu_type=spec.gpu_type,
            gpus_per_replica=spec.gpus_per_replica))
        pods.extend(cluster.metrics[index].samples(cluster.fluids[index],
                                                   cluster.pool_pods[index]))
    return ClusterSnapshot(cluster.now_s, tuple(pools), tuple(pods), dict(cluster.gpu_free))
