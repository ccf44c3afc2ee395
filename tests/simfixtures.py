"""Small, explicit profiles and workloads for engine and cluster tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from rlscale.sim.profile import PerformanceProfile, profile_from_dict
from rlscale.sim.spec import ClusterSpec, PoolSpec
from rlscale.sim.workload import Workload

BASE_PROFILE: dict[str, Any] = {
    "name": "test-8b",
    "model": "test-8b",
    "gpu": "gpu-a",
    "tensor_parallel": 1,
    "gpu_memory_gib": 80,
    "weight_gib": 15,
    "kv_kib_per_token": 128,
    "activation_reserve_gib": 2,
    "gpu_memory_utilization": 0.9,
    "kv_block_size": 16,
    "max_num_seqs": 256,
    "max_num_batched_tokens": 2048,
    "max_model_len": 8192,
    "enable_chunked_prefill": True,
    "overhead_s": 0.010,
    "prefill_s_per_token": 5e-5,
    "decode_s_per_seq": 5e-5,
    "context_s_per_token": 6.5e-8,
    "price_per_gpu_hour": 2.0,
    "cold_start": {"median_s": 60.0, "p95_s": 90.0, "min_s": 30.0},
}


def make_profile(**overrides: Any) -> PerformanceProfile:
    """The test profile with fields replaced (memory in GiB, KV in KiB per token)."""
    return profile_from_dict({**BASE_PROFILE, **overrides}, "test")


def poisson_workload(rate_per_s: float, n: int, seed: int = 0,
                     prompt: tuple[int, int] = (100, 1000),
                     output: tuple[int, int] = (50, 400)) -> Workload:
    """``n`` Poisson arrivals with uniform prompt and output lengths (inclusive ranges)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, n))
    prompts = rng.integers(prompt[0], prompt[1] + 1, n).astype(np.int64)
    outputs = rng.integers(output[0], output[1] + 1, n).astype(np.int64)
    return Workload(arrivals - arrivals[0], prompts, outputs, f"poisson({rate_per_s}/s)")


def one_pool(profile: PerformanceProfile, replicas: int, gpus: int | None = None,
             **cluster: Any) -> ClusterSpec:
    """A cluster with a single pool ``p`` of ``replicas`` warm replicas."""
    pool = PoolSpec("p", profile, 0, max(replicas, 16), replicas)
    return ClusterSpec((pool,), {profile.gpu: replicas if gpus is None else gpus}, **cluster)
