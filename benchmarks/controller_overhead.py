"""The controller's decision time per loop, and its resident memory.

    python benchmarks/controller_overhead.py [--loops 300] [--pods-per-pool 4]

What is timed: one :meth:`ControlLoop.run_once` with the metrics already collected (an
in-memory source hands over parsed pod samples), i.e. building the snapshot, the observation
(the environment's own builder, over the snapshot history), the policy, the shield and the
decision record. Scraping and the API calls are I/O and are not part of the decision; the
time to parse one pod's ``/metrics`` text is printed separately.

Cases:
- **3 pools**, the shipped PPO bundle (``rlscale/policies/hetero-3pool-ppo``), and the
  planner heuristic on the same pools;
- **100 pools**, a bundle of the shipped network's shape (two hidden layers of 128) with
  random weights for 100 pools, and the planner.

Targets (issue 6): p99 under 5 ms for 3 pools, under 100 ms for 100 pools; resident memory of
the controller process under 150 MiB. The cases run in a child process that imports exactly
what ``rlscale controller`` imports (``rlscale.controller.cli``); its peak RSS is reported, and
whether torch was imported (it must not be).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = HERE.parent / "rlscale" / "policies" / "hetero-3pool-ppo"
TARGET_P99_MS = {3: 5.0, 100: 100.0}
TARGET_RSS_MIB = 150.0
# The default scenario's pools (profile facts as rlscale.sim derives them for the bundle).
PROFILES = (("H100", 6.88, 12.0, 4), ("A100", 3.43, 5.5, 8), ("L4", 0.80, 1.2, 16))


def pool_entries(names: list[str]) -> list[dict[str, Any]]:
    """Controller config pools cycling through the three GPU types."""
    pools = []
    for i, name in enumerate(names):
        gpu, price, capacity, inventory = PROFILES[i % 3]
        pools.append({"name": name, "namespace": "llm", "deployment": f"vllm-{name}",
                      "min_replicas": 0, "max_replicas": 16, "gpu_type": gpu,
                      "gpus_per_replica": 1, "max_num_seqs": 256,
                      "price_per_replica_hour": price, "capacity_rps": capacity,
                      "gpu_inventory": inventory * (1 + len(names) // 3)})
    return pools


def config_data(names: list[str], policy: dict[str, Any]) -> dict[str, Any]:
    """An act-mode config for ``names`` with ``policy`` (leader election off)."""
    return {"mode": "act", "slo": {"ttft_s": 2.0, "itl_s": 0.15},  # default interval_s
            "pools": pool_entries(names),
            "httproute": {"namespace": "llm", "name": "vllm",
                          "backends": {f"svc-{n}": n for n in names}},
            "policy": policy, "fallback": {"heuristic": "planner"},
            "leader_election": {"enabled": False}}


def random_bundle(path: Path, data: dict[str, Any]) -> Path:
    """A bundle for the config's pools with the shipped network's shape, random weights."""
    from rlscale.agents.action_space import ActionSpec
    from rlscale.agents.bundle.format import ActorNetwork, BundleSpec
    from rlscale.agents.bundle.io import save_bundle
    from rlscale.agents.policy import PolicyContext
    from rlscale.controller.config import parse_config
    from rlscale.metrics.observation import ObservationBuilder

    config = parse_config({**data, "policy": {"heuristic": "planner"}})
    observation = config.observation_config()
    size = ObservationBuilder(observation).size
    spec = ActionSpec(tuple(config.pool_names), 2, 5)
    rng = np.random.default_rng(0)
    sizes = [size, 128, 128, sum(spec.nvec)]
    weights: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        weights += [rng.normal(0, 1 / np.sqrt(fan_in), (fan_out, fan_in)),
                    rng.normal(0, 0.1, fan_out)]
    context = PolicyContext(observation, tuple(p.min_replicas for p in config.pools),
                            config.interval_s)
    return save_bundle(path, ActorNetwork(weights, "tanh"), BundleSpec(
        context, spec, np.full(size, -1e9), np.full(size, 1e9)))


class Replay:
    """An in-memory metric source: every pool at 3 ready replicas of ``pods`` pods whose
    counters grow by a random load each interval."""

    def __init__(self, names: list[str], pods: int, seed: int = 0) -> None:
        from rlscale.metrics.vllm import (
            E2E_BUCKETS_S,
            ITL_BUCKETS_S,
            QUEUE_BUCKETS_S,
            TTFT_BUCKETS_S,
        )

        self.names, self.pods = names, pods
        self.rng = np.random.default_rng(seed)
        self.edges = {"ttft": TTFT_BUCKETS_S, "itl": ITL_BUCKETS_S, "e2e": E2E_BUCKETS_S,
                      "queue": QUEUE_BUCKETS_S}
        self.totals: dict[str, dict[str, np.ndarray]] = {}

    def _histogram(self, pod: str, kind: str, n: int, scale: float) -> Any:
        from rlscale.metrics.snapshot import HistogramData

        edges = self.edges[kind]
        counts = self.totals.setdefault(pod, {}).setdefault(kind, np.zeros(len(edges) + 2))
        draws = np.sort(self.rng.exponential(scale, n))
        counts[:-2] += np.searchsorted(draws, edges, side="right")
        counts[-2] += n
        counts[-1] += float(draws.sum())
        return HistogramData(edges, tuple(int(c) for c in counts[:-1]), float(counts[-1]))

    def collect(self, pools: Any, now_s: float) -> Any:
        from rlscale.controller.cluster_state import PodInfo, PoolState
        from rlscale.controller.sources import CollectedMetrics
        from rlscale.metrics.snapshot import PodSample

        samples, states = [], {}
        for pool in self.names:
            infos = []
            for i in range(self.pods):
                pod = f"{pool}-{i}"
                n = int(self.rng.poisson(60))
                done = self.totals.setdefault(pod, {}).setdefault("done", np.zeros(1))
                done += n
                samples.append(PodSample(
                    pod=pod, pool=pool, num_requests_running=int(self.rng.integers(0, 64)),
                    num_requests_waiting=int(self.rng.integers(0, 4)),
                    kv_cache_usage_perc=float(self.rng.uniform(0.1, 0.9)),
                    prompt_tokens_total=int(done[0]) * 500,
                    generation_tokens_total=int(done[0]) * 200, num_preemptions_total=0,
                    request_success_total=int(done[0]),
                    time_to_first_token_seconds=self._histogram(pod, "ttft", n, 0.3),
                    inter_token_latency_seconds=self._histogram(pod, "itl", 10 * n, 0.03),
                    e2e_request_latency_seconds=self._histogram(pod, "e2e", n, 5.0),
                    request_queue_time_seconds=self._histogram(pod, "queue", n, 0.05)))
                infos.append(PodInfo(pod, pool, "10.0.0.1", "Running", True, False, True))
            states[pool] = PoolState(pool, self.pods, self.pods, 0, 0, 0, 0, tuple(infos))
        gpus = {gpu: 1000 for gpu, *_ in PROFILES}
        return CollectedMetrics(now_s, states, tuple(samples),
                                dict.fromkeys(self.names, 1.0), gpus, ())

    def close(self) -> None:
        """Nothing to release."""


class Discard:
    """An actuator that accepts every write (the API's latency is not the decision's)."""

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Accept."""

    def set_weights(self, route: Any, weights: Any) -> None:
        """Accept."""


def time_case(data: dict[str, Any], names: list[str], pods: int, loops: int
              ) -> dict[str, float | str]:
    """Run ``loops`` iterations (plus 10 warm-up) and return the decision-time percentiles."""
    from rlscale.controller.config import parse_config
    from rlscale.controller.loop import ControlLoop
    from rlscale.controller.observability import ControllerMetrics
    from rlscale.controller.policies import build_policy_setup

    config = parse_config(data)
    setup = build_policy_setup(config)
    if setup.load_error is not None:
        raise SystemExit(f"the bundle did not load: {setup.load_error}")
    replay = Replay(names, pods)
    handed = _Handed(None)
    loop = ControlLoop(config, handed, setup, actuator=Discard(), metrics=ControllerMetrics())
    times_ms: list[float] = []
    policy = ""
    for i in range(loops + 10):
        handed.collected = replay.collect(config.pools, 30.0 * i)  # not timed
        started = time.perf_counter()
        record = loop.run_once(30.0 * i)
        if i >= 10:
            times_ms.append(1000 * (time.perf_counter() - started))
            policy = record.policy
    arr = np.array(times_ms)
    return {"policy": policy, "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}


class _Handed:
    """A source that returns the collection it was given (collection is not timed)."""

    def __init__(self, collected: Any) -> None:
        self.collected = collected

    def collect(self, pools: Any, now_s: float) -> Any:
        return self.collected

    def close(self) -> None:
        """Nothing to release."""


def parse_time_us(pods: int = 200) -> float:
    """Mean time to parse one pod's vLLM ``/metrics`` text (microseconds)."""
    from rlscale.metrics.exposition import parse_pod_metrics, render_pod_metrics

    source = Replay(["p"], 1)
    sample = source.collect([], 0.0).samples[0]
    text = render_pod_metrics(sample, model_name="meta-llama/Meta-Llama-3-8B-Instruct")
    started = time.perf_counter()
    for _ in range(pods):
        parse_pod_metrics(text, pod="p-0", pool="p")
    return 1e6 * (time.perf_counter() - started) / pods


def child(loops: int, pods: int) -> None:
    """The measured process: imports what ``rlscale controller`` imports, runs the cases."""
    import logging

    import rlscale.controller.cli  # noqa: F401  (the controller's full import set)

    logging.disable(logging.CRITICAL)  # one JSON log line per decision is I/O, not decision
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (3, 100):
            names = (list(json.loads((SHIPPED / "bundle.json").read_text())["action"]["pools"])
                     if n == 3 else [f"pool{i:03d}" for i in range(n)])
            data = config_data(names, {"heuristic": "planner"})
            bundle = SHIPPED if n == 3 else random_bundle(Path(tmp) / "b100", data)
            for label, policy in (("ppo bundle", {"bundle": str(bundle)}),
                                  ("planner", {"heuristic": "planner"})):
                row = time_case({**data, "policy": policy}, names, pods, loops)
                results.append({"pools": n, "case": label, **row})
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"results": results, "rss_mib": rss_mib, "parse_us": parse_time_us(),
                      "torch_imported": "torch" in sys.modules}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=300, help="timed iterations per case")
    parser.add_argument("--pods-per-pool", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.loops, args.pods_per_pool)
        return
    out = subprocess.run([sys.executable, __file__, "--child", "--loops", str(args.loops),
                          "--pods-per-pool", str(args.pods_per_pool)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the measured process failed:\n{out.stderr}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"decision time per loop ({args.loops} loops, {args.pods_per_pool} pods per pool; "
          f"observation + policy + shield + record)")
    print(f"{'pools':>5}  {'policy':<11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'target p99':>10}  decided by")
    ok = True
    for row in report["results"]:
        target = TARGET_P99_MS[row["pools"]]
        ok &= row["p99_ms"] < target
        print(f"{row['pools']:>5}  {row['case']:<11} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['max_ms']:8.2f} {target:>8.0f} ms  {row['policy']}")
    print(f"parse one pod's /metrics: {report['parse_us']:.0f} us")
    print(f"controller process peak RSS: {report['rss_mib']:.1f} MiB "
          f"(target < {TARGET_RSS_MIB:.0f}); torch imported: {report['torch_imported']}")
    ok &= report["rss_mib"] < TARGET_RSS_MIB and not report["torch_imported"]
    print("targets met" if ok else "TARGETS NOT MET")


if __name__ == "__main__":
    main()
