"""The cluster: pods' lifecycle, GPUs, draining, gateway, faults, routing and determinism."""

from __future__ import annotations

import numpy as np
import pytest
from simfixtures import make_profile, one_pool, poisson_workload

from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import PodPhase
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.stats import summarize_requests


def test_littles_law_holds_on_a_stationary_run() -> None:
    """Time-averaged requests in the engines equal arrival rate x mean time in system."""
    rate = 20.0
    workload = poisson_workload(rate, 6000, seed=3)
    cluster = Cluster(one_pool(make_profile(), 2), workload, np.random.default_rng(0))
    samples = []
    start, end = 30.0, workload.duration_s - 30.0
    for t in np.arange(start, end, 0.25):
        cluster.run_until(float(t))
        samples.append(sum(p.engine.outstanding for p in cluster.pool_pods[0] if p.engine))
    cluster.run_to_completion()
    data = cluster.log.arrays()
    inside = (data["arrival_s"] >= start) & (data["arrival_s"] < end)
    sojourn = data["end_s"] - data["arrival_s"]
    lam = inside.sum() / (end - start)
    little = lam * sojourn[inside].mean()
    assert np.mean(samples) == pytest.approx(little, rel=0.05)


def test_scale_up_goes_starting_then_ready_after_the_cold_start() -> None:
    profile = make_profile()
    cluster = Cluster(one_pool(profile, 1, gpus=4), poisson_workload(1.0, 10),
                      np.random.default_rng(0))
    cluster.set_replicas(0, 3)
    assert cluster.pods_in(0, PodPhase.STARTING) == 2
    ready_at = sorted(p.ready_at_s for p in cluster.pool_pods[0] if p.phase == PodPhase.STARTING)
    assert all(profile.cold_start.min_s <= t <= 300 for t in ready_at)
    cluster.run_until(ready_at[0] - 1e-6)
    assert cluster.pods_in(0, PodPhase.READY) == 1
    cluster.run_until(ready_at[-1])
    assert cluster.pods_in(0, PodPhase.READY) == 3


def test_pending_pods_wait_for_gpus_and_start_when_freed() -> None:
    cluster = Cluster(one_pool(make_profile(), 1, gpus=2), poisson_workload(1.0, 10),
                      np.random.default_rng(0))
    cluster.set_replicas(0, 4)
    assert cluster.pods_in(0, PodPhase.STARTING) == 1
    assert cluster.pods_in(0, PodPhase.PENDING) == 2
    assert cluster.gpu_free["gpu-a"] == 0
    cluster.restore_gpus("gpu-a", 1)
    assert cluster.pods_in(0, PodPhase.PENDING) == 1
    assert cluster.pods_in(0, PodPhase.STARTING) == 2
    # Scaling down removes the pending pod first.
    cluster.set_replicas(0, 3)
    assert cluster.pods_in(0, PodPhase.PENDING) == 0


def test_a_replicaset_outside_adds_and_removes_the_pods_it_chooses() -> None:
    """add_pod / remove_pod: the pod named goes (not the one set_replicas would pick), and
    the desired count follows."""
    workload = poisson_workload(20.0, 2000, seed=4, output=(300, 600))
    cluster = Cluster(one_pool(make_profile(), 2, gpus=3), workload, np.random.default_rng(0))
    cluster.run_until(30.0)
    oldest, newest = cluster.pool_pods[0]
    added = cluster.add_pod(0)
    assert cluster.desired[0] == 3
    assert added.phase == PodPhase.STARTING
    cluster.remove_pod(oldest)  # set_replicas would have removed the starting pod first
    assert cluster.desired[0] == 2
    assert oldest.phase == PodPhase.DRAINING
    assert added.phase == PodPhase.STARTING
    assert newest.phase == PodPhase.READY
    cluster.remove_pod(oldest)  # already draining: nothing changes
    assert cluster.desired[0] == 2
    cluster.remove_pod(added)
    assert added.phase == PodPhase.GONE
    assert cluster.desired[0] == 1
    cluster.run_to_completion()
    assert oldest.phase == PodPhase.GONE
    assert summarize_requests(cluster.log, SLO())["failed"] == 0


def test_a_drained_replica_finishes_its_requests() -> None:
    workload = poisson_workload(20.0, 2000, seed=4, output=(300, 600))
    cluster = Cluster(one_pool(make_profile(), 2), workload, np.random.default_rng(0))
    cluster.run_until(30.0)
    draining = cluster.pool_pods[0][-1]
    busy = draining.engine.outstanding
    assert busy > 0
    cluster.set_replicas(0, 1)
    assert draining.phase == PodPhase.DRAINING
    cluster.run_until(31.0)
    assert draining.engine.outstanding < busy + 1, "a draining pod takes no new requests"
    cluster.run_to_completion()
    assert draining.phase == PodPhase.GONE
    summary = summarize_requests(cluster.log, SLO())
    assert summary["failed"] == 0
    assert summary["completed"] == 2000


def test_no_ready_replica_means_gateway_wait_then_timeout() -> None:
    profile = make_profile(cold_start={"median_s": 100.0, "p95_s": 100.0, "min_s": 100.0})
    spec = one_pool(profile, 1, start_cold=True, gateway_timeout_s=30.0)
    workload = poisson_workload(2.0, 400, seed=5)
    cluster = Cluster(spec, workload, np.random.default_rng(0))
    cluster.run_to_completion()
    data = cluster.log.arrays()
    timed_out = data["failure"] == 1
    # Requests arriving before 70 s cannot be served before the pod is ready at 100 s.
    assert np.all(timed_out[data["arrival_s"] < 69.0])
    assert not np.any(timed_out[data["arrival_s"] > 71.0])
    assert np.allclose(data["end_s"][timed_out] - data["arrival_s"][timed_out], 30.0)


def test_a_crash_retries_or_fails_every_request_never_loses_one() -> None:
    workload = poisson_workload(15.0, 3000, seed=6)
    cluster = Cluster(one_pool(make_profile(), 2, gpus=3), workload, np.random.default_rng(0))
    cluster.schedule(40.0, lambda c: c.crash_pod(c.pool_pods[0][0]))
    cluster.schedule(60.0, lambda c: c.lose_gpus("gpu-a", 1))
    cluster.run_to_completion()
    summary = summarize_requests(cluster.log, SLO())
    assert summary["requests"] == 3000
    assert summary["completed"] + summary["failed"] == 3000
    assert sorted(cluster.log.int_columns["id"]) == list(range(3000)), "each request ends once"
    assert cluster.pods_in(0, PodPhase.READY) == 2, "the crashed pod was replaced"


def test_routing_all_traffic_to_one_pool_sends_nothing_to_the_other() -> None:
    profile = make_profile()
    other = make_profile(gpu="gpu-b")
    spec = ClusterSpec(
        (PoolSpec("a", profile, 0, 4, 2), PoolSpec("b", other, 0, 4, 2, routing_weight=0.0)),
        {"gpu-a": 4, "gpu-b": 4})
    cluster = Cluster(spec, poisson_workload(10.0, 1000, seed=7), np.random.default_rng(0))
    cluster.run_until(40.0)
    cluster.set_weights([1.0, 3.0])
    cluster.run_to_completion()
    data = cluster.log.arrays()
    before = data["arrival_s"] < 40.0
    assert np.all(data["pool"][before] == 0)
    share_b = np.mean(data["pool"][~before] == 1)
    assert share_b == pytest.approx(0.75, abs=0.05)


def test_same_seed_same_result_other_seed_other_result() -> None:
    def run(seed: int) -> dict[str, object]:
        profile = make_profile()
        spec = one_pool(profile, 2, gpus=4, start_cold=True)
        cluster = Cluster(spec, poisson_workload(10.0, 1500, seed=8), np.random.default_rng(seed))
        cluster.schedule(50.0, lambda c: c.set_replicas(0, 4))
        cluster.run_to_completion()
        return summarize_requests(cluster.log, SLO())

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_gpu_hours_count_starting_ready_and_draining_pods() -> None:
    profile = make_profile(cold_start={"median_s": 60.0, "p95_s": 60.0, "min_s": 60.0})
    cluster = Cluster(one_pool(profile, 1, gpus=4), poisson_workload(0.5, 5),
                      np.random.default_rng(0))
    cluster.set_replicas(0, 2)
    cluster.run_until(3600.0)
    # One pod for the hour, one from time 0 (starting for 60 s, then ready).
    assert cluster.gpu_hours(0) == pytest.approx(2.0)
    assert cluster.cost_usd(0) == pytest.approx(2.0 * profile.price_per_gpu_hour)
