"""Simulated requests per wall-second of the request-level engine, on a real trace.

Replays the Azure LLM inference 2023 conversation trace (Patel et al., Splitwise, ISCA 2024;
Azure/AzurePublicDataset, CC-BY 4.0) through 8 replicas of Llama-3-8B on A100-80GB, time-scaled
so that the replicas' mean KV-cache usage is 60-80 % (the scale is searched first, then the
replay is timed). With vLLM's default ``max_num_seqs=256`` the sequence cap holds this trace's
mean KV usage near 55 %, so the benchmark runs the engine with ``--max-num-seqs 512`` (the KV cache
becomes the binding limit); 60-80 % KV usage is then past the replicas' prefill saturation,
which the printed TTFT shows.

Prints simulated requests per wall-second, best of ``--repeat`` runs, on one core (the
simulator is single-threaded), and the same for the engine iterating one step at a time
(``step_by_step``, how vLLM's own loop and most simulators advance) as the baseline measured in
the same run, with the largest difference in per-request latency between the two modes.

    python benchmarks/sim_speed.py [--trace PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rlscale.sim.cluster import Cluster
from rlscale.sim.profile import load_profile
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.stats import summarize_requests
from rlscale.sim.workload import Workload, read_trace, time_scaled
from rlscale.sim.workload.generators import Diurnal, GammaRenewal, Poisson

DEFAULT_TRACE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"
                 / "AzureLLMInferenceTrace_conv.csv")
PROFILE = "llama-3-8b_a100-80gb"
REPLICAS = 8
MAX_NUM_SEQS = 512
KV_TARGET = (0.60, 0.80)
VIDUR_REQUESTS_PER_S = 1000.0
"""The reference discrete-event LLM-serving simulator (Vidur) on these machines, per the issue."""


def replay(trace: Workload, scale: float, seed: int = 0,
           step_by_step: bool = False) -> tuple[Cluster, float]:
    """Run the trace at ``scale`` x speed on the benchmark cluster; returns it and wall seconds."""
    profile = load_profile(PROFILE).with_overrides(max_num_seqs=MAX_NUM_SEQS)
    pool = PoolSpec("a100", profile, 0, REPLICAS, REPLICAS)
    spec = ClusterSpec((pool,), {profile.gpu: REPLICAS})
    cluster = Cluster(spec, time_scaled(trace, scale), np.random.default_rng(seed),
                      step_by_step=step_by_step)
    started = time.perf_counter()
    cluster.run_to_completion()
    return cluster, time.perf_counter() - started


def find_scale(trace: Workload) -> tuple[float, float]:
    """Bisect the time scale whose mean KV-cache usage is inside ``KV_TARGET``."""
    low, high = 1.0, 64.0
    for _ in range(12):
        scale = (low * high) ** 0.5
        usage = replay(trace, scale)[0].mean_kv_cache_usage()
        if usage < KV_TARGET[0]:
            low = scale
        elif usage > KV_TARGET[1]:
            high = scale
        else:
            return scale, usage
    raise SystemExit(f"no time scale in [1, 64] gives KV usage in {KV_TARGET}")


def measure(trace: Workload, label: str, scale: float, repeat: int) -> None:
    """Time the replay at ``scale`` (best of ``repeat``) against one step-by-step replay."""
    best = float("inf")
    cluster = None
    for _ in range(repeat):
        cluster, wall = replay(trace, scale)
        best = min(best, wall)
    assert cluster is not None
    rate = len(trace) / best
    reference, reference_wall = replay(trace, scale, step_by_step=True)
    reference_rate = len(trace) / reference_wall
    fast, slow = cluster.log.arrays(), reference.log.arrays()
    fast_order, slow_order = np.argsort(fast["id"]), np.argsort(slow["id"])
    deviation = float(np.nanmax(np.abs(fast["e2e_s"][fast_order] - slow["e2e_s"][slow_order])))
    summary = summarize_requests(cluster.log, SLO())
    steps = sum(p.engine.steps_total for p in cluster.pool_pods[0] if p.engine)
    print(f"\n[{label}] time-scaled x{scale:.2f} ({len(trace) / (trace.duration_s / scale):.1f} "
          f"req/s); mean KV-cache usage {cluster.mean_kv_cache_usage():.1%}; TTFT p50 "
          f"{summary['ttft_s']['p50']:.2f} s, p99 {summary['ttft_s']['p99']:.2f} s; "
          f"{steps} engine steps")
    print(f"  simulated requests per wall-second: {rate:,.0f} (best of {repeat}: {best:.3f} s)")
    print(f"  step-by-step baseline, same run: {reference_rate:,.0f} req/s -> segments "
          f"{rate / reference_rate:.1f}x faster; largest e2e difference {deviation:.1e} s")
    print(f"  against Vidur's ~{VIDUR_REQUESTS_PER_S:,.0f} req/s quoted in the issue (not "
          f"measured here): {rate / VIDUR_REQUESTS_PER_S:.0f}x")


def measure_generators(repeat: int) -> None:
    """Arrivals per wall-second of the arrival processes (one million arrivals each)."""
    noisy = Diurnal(1e4, 0.5, 50.0, noise_cv=0.2, noise_bucket_s=1.0)
    for name, process in (("poisson", Poisson(1e4)), ("gamma cv 2", GammaRenewal(1e4, 2.0)),
                          ("diurnal with noise", noisy)):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            arrivals = process.sample(100.0, np.random.default_rng(13))
            times.append(time.perf_counter() - started)
        print(f"arrivals ({name}): {len(arrivals) / min(times):,.0f} per wall-second "
              f"(best of {repeat})")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    measure_generators(args.repeat)
    if not args.trace.exists():
        print(f"trace {args.trace} not found (see shared/data/traces)", file=sys.stderr)
        return 2
    trace = read_trace(args.trace)
    scale, _usage = find_scale(trace)
    print(f"trace: {args.trace.name}, {len(trace)} requests over {trace.duration_s:.0f} s, "
          f"on {REPLICAS} x {PROFILE} (max_num_seqs={MAX_NUM_SEQS})")
    # The load (KV 60-80 %, past saturation) and a busy but stable one (a third of it).
    for label, factor in (("KV 60-80% (issue's load)", scale), ("stable load", scale / 3)):
        measure(trace, label, factor, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
