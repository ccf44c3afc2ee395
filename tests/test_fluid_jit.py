"""The fast engine's compiled loops (``rlscale.sim.fluid.kernels``) give the plain path's
numbers bit for bit: numpy's summation and interpolation re-done one value at a time, and whole
episodes (observations, rewards, step metrics, request logs, pods' samples) run both ways."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from rlscale.envs import LLMClusterEnv
from rlscale.sim.fluid import kernels
from rlscale.sim.fluid.metrics import PoolMetrics
from rlscale.sim.fluid.pool import FluidPool
from rlscale.sim.fluid.requests import PoolRequests
from rlscale.sim.profile import load_profile

A100 = load_profile("llama-3-8b_a100-80gb")

needs_numba = pytest.mark.skipif(not kernels.JIT_AVAILABLE,
                                 reason="numba is not installed (the 'fast' extra)")


@pytest.fixture
def jit_restored() -> Iterator[None]:
    before = kernels.jit_enabled()
    yield
    kernels.set_jit(before)


def _lengths() -> list[int]:
    return [*range(140), 255, 256, 257, 1000, 1031, 4097, 9001]


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=needs_numba)])
def test_pairwise_sum_is_numpys_sum_to_the_bit(compiled: bool) -> None:
    total = kernels.pairwise_sum_compiled if compiled else kernels.pairwise_sum
    rng = np.random.default_rng(0)
    for n in _lengths():
        values = rng.random(n + 3) * 10.0 ** rng.uniform(-3, 6, n + 3)
        # From an offset too: a slice's sum is the same as its own array's.
        assert total(values, 3, n) == float(values[3:].sum()), f"{n} values"


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=needs_numba)])
def test_interp_is_numpys_interp_to_the_bit(compiled: bool) -> None:
    interp = kernels._interp if compiled else kernels.interp
    rng = np.random.default_rng(1)
    xp = np.cumsum(rng.uniform(0.1, 2.0, 300))
    fp = np.cumsum(np.where(rng.random(300) < 0.2, 0.0, rng.uniform(0, 9, 300)))
    x = np.concatenate([rng.uniform(xp[0] - 1, xp[-1] + 1, 2000), xp, [xp[0], xp[-1]]])
    expected = np.interp(x, xp[:250], fp[:250])
    got = np.array([interp(value, xp, fp, 250) for value in x])
    np.testing.assert_array_equal(got, expected)


def _queue_states(steps: int) -> list[PoolRequests]:
    """Copies of a pool's requests (and fluid) each time the fast engine resolved them."""
    import rlscale.sim.fluid.cluster as fluid_cluster

    states: list[PoolRequests] = []
    original = fluid_cluster.FluidCluster._finish

    def capture(self: fluid_cluster.FluidCluster, pool: int) -> None:
        states.append(copy.deepcopy(self.queues[pool]))
        original(self, pool)

    env = LLMClusterEnv("hetero-3pool", {"engine": {"mode": "fast"}}, load_scale=1.4)
    env.action_space.seed(2)
    env.reset(seed=2)
    fluid_cluster.FluidCluster._finish = capture  # type: ignore[method-assign]
    try:
        for _ in range(steps):
            env.step(env.action_space.sample())
    finally:
        fluid_cluster.FluidCluster._finish = original  # type: ignore[method-assign]
    return states


def test_resolve_rows_as_loops_is_the_numpy_resolution(jit_restored: None) -> None:
    """:func:`kernels.resolve_rows` (run as Python here, compiled in the engine) against
    ``PoolRequests.resolve``'s numpy code on states of a loaded episode."""
    kernels.set_jit(False)
    states = _queue_states(12)
    assert max(len(queue.queued) for queue in states) > 50, "no queue to resolve"
    for queue in states[::4]:
        pool = queue.pool
        loops = kernels.resolve_rows(queue.queued, queue.decoding, pool.times, pool.prefilled,
                                     pool.iterations, pool.decode_step_s, pool.prefill_rate,
                                     pool.points, pool.prefill_s, pool.batch_tokens)
        plain = copy.deepcopy(queue)
        finished, finish_s, ttft_s, queue_s = plain.resolve()
        for got, want in zip(loops, (plain.queued, plain.decoding, finished, finish_s, ttft_s,
                                     queue_s, plain.pool.context_tokens), strict=True):
            np.testing.assert_array_equal(got, want)


@needs_numba
def test_compiled_histograms_count_and_sum_as_numpy(jit_restored: None) -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        first, finished, gaps = (int(n) for n in rng.integers(0, 300, 3))
        fluid = FluidPool(A100, 100.0)
        fluid.itl_values = rng.uniform(0.005, 0.3, gaps).tolist()
        fluid.itl_weights = rng.uniform(1, 60, gaps).tolist()
        ttft_s, queue_s = rng.exponential(1.0, first), rng.exponential(0.4, first)
        e2e_s = rng.exponential(20.0, finished)
        start = rng.integers(0, 1000, len(PoolMetrics("a100").totals)).astype(float)
        totals = []
        for compiled in (False, True):
            kernels.set_jit(compiled)
            metrics = PoolMetrics("a100")
            metrics.totals[:] = start
            metrics.observe_engine(copy.deepcopy(fluid), ttft_s, queue_s, e2e_s)
            totals.append(metrics.totals)
        np.testing.assert_array_equal(totals[1], totals[0])


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, float):
        digest.update(np.float64(value).tobytes())
    else:
        digest.update(repr(value).encode())


def _episode_digest(scenario: str, seed: int, steps: int) -> str:
    """A hash of every observation, reward and info of ``steps`` random fast steps (episodes
    of 20 steps, resets included), the pods' samples now and then, and the request log."""
    env = LLMClusterEnv(scenario, {"engine": {"mode": "fast"},
                                   "episode": {"duration_s": 600}}, load_scale=1.3)
    env.action_space.seed(seed)
    digest = hashlib.sha256()
    _feed(digest, env.reset(seed=seed))
    for step in range(steps):
        observation, reward, _, truncated, info = env.step(env.action_space.sample())
        _feed(digest, [observation, reward, info])
        if step % 7 == 0:
            _feed(digest, repr(env.lookback.latest.pods))
        if truncated:
            cluster = env.cluster
            assert cluster is not None
            _feed(digest, [env.episode_summary(), cluster.log.arrays()])
            _feed(digest, env.reset())
    return digest.hexdigest()


@needs_numba
@pytest.mark.parametrize("scenario", ["hetero-3pool", "single-pool"])
def test_compiled_and_plain_engines_give_the_same_episodes(scenario: str,
                                                           jit_restored: None) -> None:
    digests = []
    for compiled in (False, True):
        kernels.set_jit(compiled)
        digests.append(_episode_digest(scenario, seed=4, steps=50))
    assert digests[0] == digests[1], "the compiled loops changed the fast engine's numbers"


def test_asking_for_compiled_loops_without_numba_says_how_to_get_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "JIT_AVAILABLE", False)
    with pytest.raises(RuntimeError, match=r"rlscale\[fast\]"):
        kernels.set_jit(True)
