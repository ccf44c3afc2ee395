"""Fidelity of the simulated replicas against their profiles' published figures.

``tests/test_profiles.py`` replays every published burst (10 and 320 ShareGPT prompts, TTFT,
inter-token latency, output throughput) through the engine and requires 10 % agreement. Here:
the knee of latency versus load under Poisson arrivals sits where the steady-state saturation
throughput — the figure the published throughput pins — says it should.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.sim.cluster import Cluster
from rlscale.sim.profile import builtin_profile_names, load_profile
from rlscale.sim.profile_fit import steady_state
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.stats import summarize_requests
from rlscale.sim.workload import Workload

PROMPT, OUTPUT = 1024, 256


def _p50_ttft(profile_name: str, rate_per_s: float, duration_s: float = 1200.0) -> float:
    profile = load_profile(profile_name)
    rng = np.random.default_rng(0)
    n = int(rate_per_s * duration_s)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, n))
    workload = Workload(arrivals - arrivals[0], np.full(n, PROMPT, np.int64),
                        np.full(n, OUTPUT, np.int64), "poisson")
    spec = ClusterSpec((PoolSpec("p", profile, 0, 1, 1),), {profile.gpu: profile.tensor_parallel})
    cluster = Cluster(spec, workload, np.random.default_rng(0))
    cluster.run_to_completion()
    return float(summarize_requests(cluster.log, SLO())["ttft_s"]["p50"])


@pytest.mark.parametrize("name", builtin_profile_names())
def test_latency_knee_is_within_10_percent_of_saturation_throughput(name: str) -> None:
    saturation_rps = steady_state(load_profile(name), PROMPT, OUTPUT).output_tok_s / OUTPUT
    below = _p50_ttft(name, 0.9 * saturation_rps)
    above = _p50_ttft(name, 1.1 * saturation_rps)
    assert below < 1.0, f"{name}: at 90% of saturation TTFT p50 is {below:.2f} s"
    assert above > 10.0, f"{name}: at 110% of saturation TTFT p50 is only {above:.2f} s"
