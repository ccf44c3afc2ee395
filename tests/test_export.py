"""The metrics snapshot the simulator emits: vLLM's schema, consistent with what happened."""

from __future__ import annotations

import numpy as np
from simfixtures import make_profile, one_pool, poisson_workload

from rlscale.metrics.vllm import E2E_BUCKETS_S, ITL_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.sim.cluster import Cluster
from rlscale.sim.export import cluster_snapshot


def test_snapshot_counters_and_histograms_agree_with_the_request_log() -> None:
    workload = poisson_workload(8.0, 800, seed=11)
    cluster = Cluster(one_pool(make_profile(), 2, gpus=3), workload, np.random.default_rng(0))
    cluster.run_until(40.0)
    cluster.set_replicas(0, 3)
    mid = cluster_snapshot(cluster)
    assert mid.time_s == 40.0
    (pool,) = mid.pools
    assert (pool.desired_replicas, pool.ready_replicas, pool.starting_replicas) == (3, 2, 1)
    assert mid.free_gpus == {"gpu-a": 0}
    assert sum(p.num_requests_running + p.num_requests_waiting for p in mid.pods) == (
        cluster.in_flight)
    assert all(0.0 <= p.kv_cache_usage_perc <= 1.0 for p in mid.pods)
    cluster.run_to_completion()
    end = cluster_snapshot(cluster)
    finished = len(cluster.log)
    assert sum(p.request_success_total for p in end.pods) == finished
    assert sum(p.time_to_first_token_seconds.count for p in end.pods) == finished
    assert sum(p.generation_tokens_total for p in end.pods) == int(workload.output_tokens.sum())
    assert sum(p.prompt_tokens_total for p in end.pods) == int(workload.prompt_tokens.sum())
    itl_tokens = sum(p.inter_token_latency_seconds.count for p in end.pods)
    assert itl_tokens == int((workload.output_tokens - 1).sum())
    sample = end.pods[0]
    assert sample.time_to_first_token_seconds.edges == TTFT_BUCKETS_S
    assert sample.inter_token_latency_seconds.edges == ITL_BUCKETS_S
    assert sample.e2e_request_latency_seconds.edges == E2E_BUCKETS_S
    cumulative = sample.e2e_request_latency_seconds.cumulative
    assert list(cumulative) == sorted(cumulative)
    # Counters only grow between scrapes of the same pod.
    before = {p.pod: p for p in mid.pods}
    for pod in end.pods:
        if pod.pod in before:
            assert pod.generation_tokens_total >= before[pod.pod].generation_tokens_total
