"""Turn the simulated cluster's state into the metrics snapshot a real cluster would show."""

from __future__ import annotations

from rlscale.metrics.snapshot import ClusterSnapshot, HistogramData, PodSample, PoolStatus
from rlscale.sim.cluster import Cluster
from rlscale.sim.histogram import Histogram
from rlscale.sim.pod import PodPhase


def _histogram(h: Histogram) -> HistogramData:
    return HistogramData(h.edges, tuple(h.cumulative()), h.sum)


def cluster_snapshot(cluster: Cluster) -> ClusterSnapshot:
    """Scrape every ready or draining pod and read every pool's status at ``cluster.now_s``.

    Call after :meth:`Cluster.run_until`, which brings engines' counters up to date.
    """
    pods: list[PodSample] = []
    pools: list[PoolStatus] = []
    for index, spec in enumerate(cluster.pools):
        phases = [p.phase for p in cluster.pool_pods[index]]
        pools.append(PoolStatus(
            pool=spec.name,
            desired_replicas=cluster.desired[index],
            ready_replicas=phases.count(PodPhase.READY),
            starting_replicas=phases.count(PodPhase.STARTING),
            pending_replicas=phases.count(PodPhase.PENDING),
            draining_replicas=phases.count(PodPhase.DRAINING),
            routing_weight=cluster.router.weights[index],
            gpu_type=spec.gpu_type,
            gpus_per_replica=spec.gpus_per_replica,
        ))
        for pod in cluster.pool_pods[index]:
            engine = pod.engine
            if engine is None:
                continue
            pods.append(PodSample(
                pod=pod.name,
                pool=spec.name,
                num_requests_running=len(engine.running),
                num_requests_waiting=len(engine.waiting),
                kv_cache_usage_perc=engine.kv_cache_usage,
                prompt_tokens_total=engine.prompt_tokens_total,
                generation_tokens_total=engine.generation_tokens_total,
                num_preemptions_total=engine.preemptions_total,
                request_success_total=engine.success_total,
                time_to_first_token_seconds=_histogram(engine.hist_ttft),
                inter_token_latency_seconds=_histogram(engine.hist_itl),
                e2e_request_latency_seconds=_histogram(engine.hist_e2e),
                request_queue_time_seconds=_histogram(engine.hist_queue),
                ready=pod.phase == PodPhase.READY,
            ))
    return ClusterSnapshot(cluster.now_s, tuple(pools), tuple(pods), dict(cluster.gpu_free))
