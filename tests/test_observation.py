"""The observation builder: Prometheus arithmetic, worked examples, and the one rule — the
observation holds nothing a real cluster's /metrics and Deployment status could not show."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from simfixtures import make_profile, poisson_workload

from rlscale.metrics import (
    ClusterSnapshot,
    HistogramData,
    ObservationBuilder,
    ObservationConfig,
    PodSample,
    PoolInfo,
    PoolStatus,
    Spelling,
    histogram_fraction_above,
    histogram_quantile,
    interval_stats,
    observation,
    parse_pod_metrics,
    render_pod_metrics,
)
from rlscale.metrics.features import (
    FEATURE_VERSIONS,
    GLOBAL_FEATURES,
    POOL_FEATURES,
    feature_table,
)
from rlscale.sim.cluster import Cluster
from rlscale.sim.export import cluster_snapshot
from rlscale.sim.spec import ClusterSpec, PoolSpec

TTFT_EDGES = (0.5, 1.0, 2.0)
ITL_EDGES = (0.05, 0.1, 0.2)
EMPTY4 = (0, 0, 0, 0)


# ---------------------------------------------------------------------------------- helpers
def pod(name: str, pool: str = "a", *, success: int = 0, running: int = 0, waiting: int = 0,
        prompt: int = 0, generation: int = 0, kv: float = 0.0,
        ttft: tuple[int, ...] = EMPTY4, itl: tuple[int, ...] = EMPTY4) -> PodSample:
    """A pod sample with small histograms (TTFT edges 0.5/1/2 s, ITL 0.05/0.1/0.2 s)."""
    empty = HistogramData((1.0,), (0, 0), 0.0)
    return PodSample(name, pool, running, waiting, kv, prompt, generation, 0, success,
                     HistogramData(TTFT_EDGES, ttft, 0.0), HistogramData(ITL_EDGES, itl, 0.0),
                     empty, empty)


def status(name: str = "a", *, ready: int = 1, starting: int = 0, pending: int = 0,
           draining: int = 0, weight: float = 1.0) -> PoolStatus:
    return PoolStatus(name, ready + starting + pending, ready, starting, pending, draining,
                      weight, "gpu-a", 1)


def snap(time_s: float, pods: Sequence[PodSample], pools: Sequence[PoolStatus] = (),
         free: int = 2) -> ClusterSnapshot:
    return ClusterSnapshot(time_s, tuple(pools) or (status(),), tuple(pods), {"gpu-a": free})


def info(name: str = "a", *, max_replicas: int = 4, price: float = 2.0,
         capacity_rps: float = 5.0, inventory: int = 8, prefill_tok_s: float = 1000.0,
         decode_tok_s: float = 100.0) -> PoolInfo:
    return PoolInfo(name, "gpu-a", 1, max_replicas, 16, price, capacity_rps, inventory,
                    prefill_tok_s, decode_tok_s)


CONFIG = ObservationConfig((info(),), slo_ttft_s=1.5, slo_itl_s=0.1, day_length_s=100.0)


def feature(builder: ObservationBuilder, obs: np.ndarray, name: str) -> float:
    return float(obs[builder.names.index(name)])


# ---------------------------------------------------------------------------------- arithmetic
# Bucket counts 2, 4, 2, 2 under le = 0.5, 1, 2, +Inf: cumulative 2, 6, 8, 10.
@pytest.mark.parametrize(("q", "expected"), [
    (0.1, 0.25),    # rank 1 in the first bucket: 0 + 0.5 x 1/2
    (0.5, 0.875),   # rank 5 in (0.5, 1]: 0.5 + 0.5 x (5 - 2) / 4
    (0.6, 1.0),     # rank 6: exactly the top of (0.5, 1]
    (0.7, 1.5),     # rank 7 in (1, 2]: 1 + 1 x (7 - 6) / 2
    (0.8, 2.0),     # rank 8: the top of (1, 2]
    (0.9, 2.0),     # rank 9 falls in +Inf: the highest finite edge
    (0.99, 2.0),
    (-0.5, -math.inf),
    (1.5, math.inf),
])  # fmt: skip
def test_histogram_quantile_worked_examples(q: float, expected: float) -> None:
    assert histogram_quantile(q, TTFT_EDGES, (2, 6, 8, 10)) == pytest.approx(expected)


def test_histogram_quantile_without_observations_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.5, TTFT_EDGES, EMPTY4))
    assert math.isnan(histogram_quantile(math.nan, TTFT_EDGES, (2, 6, 8, 10)))
    assert math.isnan(histogram_fraction_above(1.0, TTFT_EDGES, EMPTY4))
    with pytest.raises(ValueError, match="expected 4 cumulative counts"):
        histogram_quantile(0.5, TTFT_EDGES, (1, 2))


@pytest.mark.parametrize(("threshold", "expected"), [
    (0.25, 0.9),   # F(0.25) = 2 x 0.25/0.5 = 1 of 10
    (1.0, 0.4),    # on an edge: 6 at or below
    (1.5, 0.3),    # F(1.5) = 6 + 2 x 0.5 = 7
    (2.0, 0.2),
    (3.0, 0.2),    # beyond the last edge: the +Inf bucket counts as above
])  # fmt: skip
def test_violation_fraction_interpolates_inside_the_bucket(threshold: float,
                                                           expected: float) -> None:
    assert histogram_fraction_above(threshold, TTFT_EDGES, (2, 6, 8, 10)) == pytest.approx(
        expected)


def test_interval_percentiles_come_from_bucket_deltas() -> None:
    prev = snap(0.0, [pod("x", ttft=(1, 2, 3, 3), itl=(5, 5, 5, 5))])
    cur = snap(30.0, [pod("x", ttft=(3, 8, 11, 13), itl=(5, 15, 20, 25))])
    (stats,) = interval_stats(prev, cur, CONFIG)
    assert stats.observed_requests == 10
    assert stats.ttft_p50_s == pytest.approx(0.875)
    assert stats.ttft_p90_s == pytest.approx(2.0)
    assert stats.ttft_p99_s == pytest.approx(2.0)
    assert stats.ttft_slo_violation == pytest.approx(0.3)
    # ITL deltas: 0, 10, 15, 20 cumulative -> p50 rank 10 at the top of (0.05, 0.1]
    assert stats.itl_p50_s == pytest.approx(0.1)
    assert stats.itl_p90_s == pytest.approx(0.2)  # rank 18 in +Inf
    assert stats.itl_slo_violation == pytest.approx(0.5)


def test_an_interval_without_observations_has_no_latency_and_no_traffic() -> None:
    same = pod("x", success=4, ttft=(1, 2, 3, 4))
    history = [snap(0.0, [same]), snap(30.0, [same])]
    (stats,) = interval_stats(history[0], history[1], CONFIG)
    assert stats.observed_requests == 0
    assert math.isnan(stats.ttft_p50_s)
    assert math.isnan(stats.ttft_slo_violation)
    builder = ObservationBuilder(CONFIG)
    obs = builder.observe(history)
    for name in ("ttft_p50", "ttft_p99", "itl_p90", "ttft_slo_violation", "has_traffic"):
        assert feature(builder, obs, f"a/{name}") == 0.0


def test_a_counter_reset_takes_the_new_values_as_the_delta() -> None:
    before = pod("x", success=100, prompt=9000, ttft=(50, 80, 90, 100), running=5)
    after = pod("x", success=10, prompt=500, ttft=(2, 6, 8, 10), running=1)  # restarted
    (stats,) = interval_stats(snap(0.0, [before]), snap(10.0, [after]), CONFIG)
    assert stats.completions_rps == pytest.approx(1.0)
    assert stats.prompt_tokens_per_s == pytest.approx(50.0)
    assert stats.arrival_rps == pytest.approx(1.1)  # 10 finished + 1 running, none before
    assert stats.observed_requests == 10
    assert stats.ttft_p50_s == pytest.approx(0.875)


def test_arrival_rate_with_pods_appearing_disappearing_and_restarting() -> None:
    prev = snap(0.0, [
        pod("stays", success=10, running=3, waiting=1),
        pod("leaves", success=20, running=2),
        pod("restarts", success=50, running=5),
    ])
    cur = snap(30.0, [
        pod("stays", success=16, running=4),          # 6 finished, in flight 4 -> 4: 6
        pod("appears", success=5, running=2, waiting=1),  # from 0: 5 + 3 = 8
        pod("restarts", success=3, running=1),        # counter went down: 3 + 1 = 4
    ])  # "leaves" is ignored
    (stats,) = interval_stats(prev, cur, CONFIG)
    assert stats.arrival_rps == pytest.approx((6 + 8 + 4) / 30)
    assert stats.completions_rps == pytest.approx((6 + 5 + 3) / 30)


def test_arrival_rate_is_clipped_at_zero() -> None:
    prev = snap(0.0, [pod("x", success=10, running=10)])
    cur = snap(10.0, [pod("x", success=12, running=2)])  # 2 finished, 8 vanished (aborted)
    (stats,) = interval_stats(prev, cur, CONFIG)
    assert stats.arrival_rps == 0.0


def test_one_snapshot_gives_zero_rates_and_no_traffic() -> None:
    builder = ObservationBuilder(CONFIG)
    obs = builder.observe([snap(0.0, [pod("x", success=40, running=8, waiting=3, kv=0.5,
                                           ttft=(10, 20, 30, 40))])])
    for name in ("arrival_short", "arrival_long", "prompt_tokens", "ttft_p50", "has_traffic"):
        assert feature(builder, obs, f"a/{name}") == 0.0
    assert feature(builder, obs, "a/running") == pytest.approx(8 / 16)
    assert feature(builder, obs, "a/waiting") == pytest.approx(math.log1p(3) / math.log1p(16))
    assert feature(builder, obs, "a/kv_cache_usage") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="history is empty"):
        builder.observe([])


def test_long_window_starts_at_the_newest_snapshot_old_enough() -> None:
    # 1 request/s until t = 300, then 3/s; snapshots every 30 s.
    history = [snap(t, [pod("x", success=int(t if t <= 300 else 300 + 3 * (t - 300)))])
               for t in range(0, 601, 30)]
    builder = ObservationBuilder(CONFIG)
    capacity = 5.0 * 4
    obs = builder.observe(history)
    assert feature(builder, obs, "a/arrival_short") == pytest.approx(3 / capacity)
    assert feature(builder, obs, "a/arrival_long") == pytest.approx(3 / capacity)  # from t=300
    obs = builder.observe(history[:15])  # t = 420: long window from t = 120
    assert feature(builder, obs, "a/arrival_long") == pytest.approx(
        (3 * 120 + 180) / 300 / capacity, rel=1e-6)
    obs = builder.observe(history[:4])  # t = 90: shorter than the window, from the oldest
    assert feature(builder, obs, "a/arrival_long") == pytest.approx(1 / capacity)
    assert feature(builder, obs, "arrival_long") == pytest.approx(1 / capacity)


def test_time_of_day_features() -> None:
    builder = ObservationBuilder(CONFIG)  # day_length_s = 100
    for time_s, sin, cos in ((0.0, 0.0, 1.0), (25.0, 1.0, 0.0), (50.0, 0.0, -1.0),
                             (175.0, -1.0, 0.0)):
        obs = builder.observe([snap(time_s, [])])
        assert feature(builder, obs, "time_of_day_sin") == pytest.approx(sin, abs=1e-6)
        assert feature(builder, obs, "time_of_day_cos") == pytest.approx(cos, abs=1e-6)


def test_replicas_routing_gpus_and_price() -> None:
    config = ObservationConfig(
        (info("a", price=4.0), info("b", price=1.0, inventory=4), info("c", price=2.0)),
        slo_ttft_s=1.0, slo_itl_s=0.1)
    pools = (status("a", ready=1, starting=2, weight=2.0), status("b", ready=0, pending=4),
             status("c", ready=2, draining=1, weight=1.0))
    builder = ObservationBuilder(config)
    obs = builder.observe([snap(0.0, [], pools, free=2)])
    expected = {"a/ready_frac": 0.25, "a/starting_frac": 0.5, "b/pending_frac": 1.0,
                "c/draining_frac": 0.25,
                "a/routing_share": 2 / 3, "b/routing_share": 0.0, "c/routing_share": 1 / 3,
                "a/free_gpus": 2 / 8, "b/free_gpus": 2 / 4, "a/price": 1.0, "b/price": 0.25,
                "c/price": 0.5}
    for name, value in expected.items():
        assert feature(builder, obs, name) == pytest.approx(value), name


def test_names_units_and_bounds_have_the_observation_size() -> None:
    config = ObservationConfig((info("a"), info("b")), slo_ttft_s=1.0, slo_itl_s=0.1,
                               feature_version=2)
    builder = ObservationBuilder(config)
    assert builder.size == 2 * len(POOL_FEATURES) + len(GLOBAL_FEATURES) == 48
    assert len(builder.names) == len(builder.units) == builder.size
    assert len(set(builder.names)) == builder.size
    assert builder.low.shape == builder.high.shape == (builder.size,)
    assert builder.low.dtype == builder.high.dtype == np.float32
    assert np.all(builder.low < builder.high)
    assert builder.names[:2] == ("a/ready_frac", "a/starting_frac")
    assert builder.names[-4:] == ("prefill_load", "decode_load", "time_of_day_sin",
                                  "time_of_day_cos")


@pytest.mark.parametrize("version", sorted(FEATURE_VERSIONS))
def test_the_features_are_declared_once_and_documented_as_declared(version: int) -> None:
    pool_features, global_features = FEATURE_VERSIONS[version]
    assert len(pool_features) == 22
    assert len(global_features) == 4
    builder = ObservationBuilder(ObservationConfig((info("a"), info("b")), 1.0, 0.1,
                                                   feature_version=version))
    entries = [*pool_features, *pool_features, *global_features]
    assert builder.names == tuple([f"a/{f.name}" for f in pool_features]
                                  + [f"b/{f.name}" for f in pool_features]
                                  + [f.name for f in global_features])
    assert builder.units == tuple(f.formula for f in entries)
    np.testing.assert_array_equal(builder.low, [f.low for f in entries])
    np.testing.assert_array_equal(builder.high, [f.high for f in entries])
    assert observation.__doc__ is not None
    assert feature_table("    ") in observation.__doc__, (
        "rlscale/metrics/observation.py's docstring table differs from rlscale/metrics/"
        "features.py: paste feature_table('    ') into it")


def test_bad_input_is_refused_with_a_reason() -> None:
    builder = ObservationBuilder(CONFIG)
    with pytest.raises(ValueError, match="out of order"):
        builder.observe([snap(30.0, []), snap(0.0, [])])
    with pytest.raises(ValueError, match=r"no status for pool\(s\) \['a'\]"):
        builder.observe([snap(0.0, [], [status("z")])])
    odd = replace(pod("y"), time_to_first_token_seconds=HistogramData((9.0,), (0, 0), 0.0))
    with pytest.raises(ValueError, match="other histogram buckets"):
        builder.observe([snap(0.0, [pod("x"), odd])])
    with pytest.raises(ValueError, match="max_replicas must be >= 1"):
        info(max_replicas=0)
    with pytest.raises(ValueError, match="slo_itl_s must be > 0"):
        ObservationConfig((info(),), slo_ttft_s=1.0, slo_itl_s=0.0)


# ---------------------------------------------------------------------------------- simulation
def _spec() -> ClusterSpec:
    fast = make_profile(cold_start={"median_s": 40.0, "p95_s": 60.0, "min_s": 20.0})
    small = make_profile(gpu="gpu-b", price_per_gpu_hour=1.0, max_num_seqs=32,
                         cold_start={"median_s": 40.0, "p95_s": 60.0, "min_s": 20.0})
    return ClusterSpec((PoolSpec("big", fast, 0, 6, 2, routing_weight=2.0),
                        PoolSpec("small", small, 0, 4, 1)), {"gpu-a": 5, "gpu-b": 4})


def _config(spec: ClusterSpec) -> ObservationConfig:
    return ObservationConfig(tuple(
        PoolInfo(p.name, p.gpu_type, p.gpus_per_replica, p.max_replicas,
                 p.profile.max_num_seqs, p.gpu_price * p.gpus_per_replica, 3.0,
                 spec.gpu_inventory[p.gpu_type])
        for p in spec.pools), slo_ttft_s=0.5, slo_itl_s=0.05, long_window_s=120.0,
        day_length_s=600.0)


@pytest.fixture(scope="module")
def simulated() -> tuple[ObservationConfig, list[ClusterSnapshot]]:
    """Snapshots every 30 s of a 2-pool run with scale-ups (cold starts, a pending pod),
    scale-downs (draining pods), a routing change and a burst that queues requests."""
    spec = _spec()
    workload = poisson_workload(14.0, 9000, seed=7, prompt=(200, 1500), output=(20, 300))
    cluster = Cluster(spec, workload, np.random.default_rng(3))
    plan = {3: lambda: cluster.set_replicas(0, 6), 6: lambda: cluster.set_replicas(1, 4),
            10: lambda: cluster.set_weights([1.0, 3.0]), 13: lambda: cluster.set_replicas(0, 1),
            16: lambda: cluster.set_replicas(1, 0), 19: lambda: cluster.set_replicas(1, 2)}
    history = [cluster_snapshot(cluster)]
    for step in range(1, 25):
        cluster.run_until(30.0 * step)
        if step in plan:
            plan[step]()
        history.append(cluster_snapshot(cluster))
    return _config(spec), history


def test_observation_stays_finite_and_inside_its_bounds_over_a_run(
        simulated: tuple[ObservationConfig, list[ClusterSnapshot]]) -> None:
    config, history = simulated
    builder = ObservationBuilder(config)
    seen = []
    for end in range(1, len(history) + 1):
        obs = builder.observe(history[:end])
        assert obs.dtype == np.float32
        assert obs.shape == (builder.size,)
        assert np.all(np.isfinite(obs))
        bad = [(n, float(v)) for n, v, lo, hi in zip(builder.names, obs, builder.low,
                                                      builder.high, strict=True)
               if not lo <= v <= hi]
        assert not bad, f"outside [low, high] after t={history[end - 1].time_s}: {bad}"
        seen.append(obs)
    seen_max = np.max(seen, axis=0)
    for name in ("big/starting_frac", "big/pending_frac", "big/draining_frac",
                 "small/starting_frac",
                 "big/has_traffic", "big/arrival_short", "big/arrival_long",
                 "small/generation_tokens", "big/ttft_p90", "small/itl_p50", "big/running",
                 "big/waiting", "big/ttft_slo_violation", "big/itl_slo_violation"):
        assert seen_max[builder.names.index(name)] > 0, f"{name} never moved in the run"
    # Incremental use (cached snapshot arrays) equals a fresh builder on the same history, and
    # a builder survives pickling (subprocess vector envs).
    fresh = ObservationBuilder(config).observe(history)
    assert np.array_equal(fresh, seen[-1])
    copy = pickle.loads(pickle.dumps(builder))
    assert np.array_equal(copy.observe(pickle.loads(pickle.dumps(history))), seen[-1])


def test_the_builder_intervals_equal_interval_stats_over_a_run(
        simulated: tuple[ObservationConfig, list[ClusterSnapshot]]) -> None:
    """The builder reuses observe()'s arrays for the policies' interval statistics: the
    records must be the ones interval_stats computes from scratch, field for field."""
    config, history = simulated
    builder = ObservationBuilder(config)
    for end in range(1, len(history) + 1):
        builder.observe(history[:end])
        prev = history[end - 2] if end > 1 else None
        got = builder.intervals(prev, history[end - 1])
        want = interval_stats(prev, history[end - 1], config)
        assert repr(got) == repr(want), f"interval statistics differ at step {end}"
        assert builder.intervals(prev, history[end - 1]) is got, "the last pair is kept"
    # Asked about another pair than the last observed, it computes that pair.
    other = builder.intervals(history[2], history[5])
    assert repr(other) == repr(interval_stats(history[2], history[5], config))


def _scraped(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The snapshot a controller would build: every pod rendered to /metrics text (spellings
    mixed, as in a cluster mid-upgrade) and parsed back; the same Deployment status."""
    spellings: tuple[Spelling, ...] = ("new", "old", "underscore")
    pods = tuple(
        parse_pod_metrics(render_pod_metrics(p, model_name="llama-3-8b",
                                             spelling=spellings[i % 3]), pod=p.pod, pool=p.pool)
        for i, p in enumerate(snapshot.pods))
    return ClusterSnapshot(snapshot.time_s, snapshot.pools, pods, dict(snapshot.free_gpus))


def test_the_observation_holds_nothing_the_cluster_could_not_observe(
        simulated: tuple[ObservationConfig, list[ClusterSnapshot]]) -> None:
    config, history = simulated
    scraped = [_scraped(s) for s in history]
    env_builder, controller_builder = ObservationBuilder(config), ObservationBuilder(config)
    for end in range(3, len(history) + 1):
        from_sim = env_builder.observe(history[:end])
        from_scrape = controller_builder.observe(scraped[:end])
        differ = [n for n, a, b in zip(env_builder.names, from_sim, from_scrape, strict=True)
                  if a != b]
        assert not differ, (f"t={history[end - 1].time_s}: the simulator's snapshot and the "
                            f"scraped one give different observations at {differ}")
        assert np.array_equal(from_sim, from_scrape)


# ---------------------------------------------------------------------------------- version 2
V2 = ObservationConfig((info("a"), info("b", max_replicas=2, prefill_tok_s=4000.0,
                                          decode_tok_s=50.0)),
                       slo_ttft_s=1.5, slo_itl_s=0.1, day_length_s=100.0, feature_version=2)


def _two_pools(time_s: float, a: PodSample, b: PodSample) -> ClusterSnapshot:
    return snap(time_s, [a, b], [status("a", ready=2), status("b", ready=1)])


@pytest.mark.parametrize("mean_prompt", [200, 1000, 6000])
def test_token_load_is_the_share_of_the_ready_replicas_token_capacity(mean_prompt: int
                                                                       ) -> None:
    """80 % of pool a's prefill capacity (2 ready x 1,000 tok/s) and 50 % of its decode
    capacity (2 x 100 tok/s) read 0.8 and 0.5 whatever the prompt length: the request rate
    is whatever the mix makes it."""
    seconds = 30.0
    prompt_tokens = int(0.8 * 2 * 1000.0 * seconds)
    requests = prompt_tokens // mean_prompt
    history = [_two_pools(0.0, pod("a1"), pod("b1", "b")),
               _two_pools(seconds, pod("a1", success=requests, prompt=prompt_tokens,
                                       generation=int(0.5 * 2 * 100.0 * seconds)),
                          pod("b1", "b", prompt=3000, generation=150))]
    builder = ObservationBuilder(V2)
    obs = builder.observe(history)
    assert feature(builder, obs, "a/prefill_load") == pytest.approx(0.8)
    assert feature(builder, obs, "a/decode_load") == pytest.approx(0.5)
    assert feature(builder, obs, "b/prefill_load") == pytest.approx(3000 / seconds / 4000.0)
    assert feature(builder, obs, "b/decode_load") == pytest.approx(150 / seconds / 50.0)
    # cluster: every pool at max_replicas (a: 4 x 1,000, b: 2 x 4,000 tok/s)
    assert feature(builder, obs, "prefill_load") == pytest.approx(
        (prompt_tokens + 3000) / seconds / (4 * 1000.0 + 2 * 4000.0))
    assert feature(builder, obs, "decode_load") == pytest.approx(
        (3000 + 150) / seconds / (4 * 100.0 + 2 * 50.0))


def test_arrival_trend_is_short_over_long_window_rate() -> None:
    """10 requests per 30 s interval, then 40 in the last one: the trend is the last
    interval's rate over the long window's (300 s back, from the snapshot at t = 30 s)."""
    history = []
    done = 0
    for k in range(12):
        done += 40 if k == 11 else (10 if k > 0 else 0)
        history.append(_two_pools(30.0 * k, pod("a1", success=done), pod("b1", "b")))
    builder = ObservationBuilder(V2)
    obs = builder.observe(history)
    short = 40 / 30.0
    long = (done - 10) / 300.0  # from t = 30 s (the newest snapshot >= 300 s old) to 330 s
    assert feature(builder, obs, "a/arrival_trend") == pytest.approx(short / long)
    assert feature(builder, obs, "b/arrival_trend") == 0.0  # no arrivals: 0, not NaN


def test_version_2_needs_every_pools_token_capacities() -> None:
    with pytest.raises(ValueError, match="feature_version 2 needs prefill_tok_s"):
        ObservationConfig((info("a"), info("b", decode_tok_s=0.0)), 1.0, 0.1,
                          feature_version=2)
    with pytest.raises(ValueError, match="feature_version must be one of"):
        ObservationConfig((info("a"),), 1.0, 0.1, feature_version=3)
