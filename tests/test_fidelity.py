"""Internal consistency of the simulated replicas under sustained load (not agreement with
published data).

Agreement with published figures is ``tests/test_profiles.py``'s job: it replays every
published burst (10 and 320 ShareGPT prompts; TTFT, inter-token latency, output throughput)
through the engine and requires 10 % agreement. Here the engine is checked against a closed
form computed from the same profile coefficients: the knee of TTFT versus Poisson load lies
where the steady-state saturation throughput (:func:`rlscale.sim.profile_fit.steady_state`)
says it should — p50 TTFT below 1.0 s at 90 % of it (0.13-0.40 s measured) and above 10 s at
110 % (16.5-63.6 s measured). The margins are wide on purpose: the test catches an engine
whose queueing disagrees with its own profile (a knee in the wrong place), not a profile that
disagrees with the hardware. None of the public figures collected for calibration
(``../shared/data/calibration.md``) measures a knee under Poisson load, so there is nothing
published to tighten it against.
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


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_profile_names())
def test_latency_knee_is_within_10_percent_of_saturation_throughput(name: str) -> None:
    saturation_rps = steady_state(load_profile(name), PROMPT, OUTPUT).output_tok_s / OUTPUT
    below = _p50_ttft(name, 0.9 * saturation_rps)
    above = _p50_ttft(name, 1.1 * saturation_rps)
    assert below < 1.0, f"{name}: at 90% of saturation TTFT p50 is {below:.2f} s"
    assert above > 10.0, f"{name}: at 110% of saturation TTFT p50 is only {above:.2f} s"
