"""Run one simulation of a scenario with a static replica plan and summarize it."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlscale.configschema import ConfigError
from rlscale.sim.cluster import Cluster
from rlscale.sim.scenario import Scenario
from rlscale.sim.stats import summarize_requests
from rlscale.sim.workload import Workload

__all__ = ["SimulationResult", "simulate", "with_replica_plan"]


@dataclass
class SimulationResult:
    """The cluster after the run, the workload it served, and ``summary`` (see
    :func:`summarize_cluster`)."""

    cluster: Cluster
    workload: Workload
    summary: dict[str, Any]


def with_replica_plan(scenario: Scenario, replicas: dict[str, int]) -> Scenario:
    """The scenario with each named pool fixed at ``replicas[name]`` ready replicas from time 0.

    Pools not named keep their ``initial_replicas``. ``max_replicas`` is raised where the plan
    exceeds it (a static plan is not bound by an autoscaler's limits).
    """
    names = [p.name for p in scenario.cluster.pools]
    unknown = sorted(set(replicas) - set(names))
    if unknown:
        raise ConfigError(f"replica plan names unknown pool(s) {unknown}; pools: {names}")
    pools = []
    for pool in scenario.cluster.pools:
        count = replicas.get(pool.name, pool.initial_replicas)
        if count < 0:
            raise ConfigError(f"replica plan: {pool.name}={count} must be >= 0")
        pools.append(dataclasses.replace(
            pool, initial_replicas=count, min_replicas=min(pool.min_replicas, count),
            max_replicas=max(pool.max_replicas, count)))
    cluster = dataclasses.replace(scenario.cluster, pools=tuple(pools))
    return dataclasses.replace(scenario, cluster=cluster)


def summarize_cluster(cluster: Cluster, scenario: Scenario, wall_s: float) -> dict[str, Any]:
    """The run's headline numbers (the keys of ``summary.json``)."""
    summary = summarize_requests(cluster.log, scenario.slo)
    data = cluster.log.arrays()
    done = data["failure"] == 0
    span_s = (float(data["end_s"][done].max() - data["arrival_s"].min())
              if done.any() else math.nan)
    pools: dict[str, dict[str, Any]] = {}
    for index, pool in enumerate(cluster.pools):
        mine = data["pool"] == index
        pools[pool.name] = {
            "profile": pool.profile.name,
            "desired_replicas": cluster.desired[index],
            "requests": int(mine.sum()),
            "gpu_hours": cluster.gpu_hours(index),
            "cost_usd": cluster.cost_usd(index),
            "mean_kv_cache_usage": cluster.mean_kv_cache_usage(index),
        }
    gpu_hours = sum(float(p["gpu_hours"]) for p in pools.values())
    summary.update({
        "scenario": scenario.name,
        "slo": {"ttft_s": scenario.slo.ttft_s, "itl_s": scenario.slo.itl_s},
        "simulated_s": cluster.now_s,
        "gpu_hours": gpu_hours,
        "cost_usd": sum(float(p["cost_usd"]) for p in pools.values()),
        "mean_kv_cache_usage": cluster.mean_kv_cache_usage(),
        "output_tokens_per_s": summary["output_tokens"] / span_s if span_s > 0 else math.nan,
        "sim_wall_s": wall_s,
        "sim_requests_per_wall_s": summary["requests"] / wall_s if wall_s > 0 else math.nan,
        "pools": pools,
    })
    return summary


def simulate(scenario: Scenario, seed: int, *, workload: Workload | None = None,
             progress: bool = False, max_s: float = math.inf) -> SimulationResult:
    """Serve the scenario's workload (or ``workload``) with the scenario's initial replicas,
    unchanged, until every request has ended; ``seed`` seeds the only random generator."""
    rng = np.random.default_rng(seed)
    if workload is None:
        workload = scenario.build_workload(rng)
    cluster = Cluster(scenario.cluster, workload, rng)
    started = time.perf_counter()
    if progress:
        _run_with_progress(cluster, workload, max_s)
    else:
        cluster.run_to_completion(max_s=max_s)
    wall_s = time.perf_counter() - started
    return SimulationResult(cluster, workload, summarize_cluster(cluster, scenario, wall_s))


def _run_with_progress(cluster: Cluster, workload: Workload, max_s: float) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    total = len(workload)
    columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} "
               "requests ended"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("simulate", total=total)
        step_s = max(1.0, workload.duration_s / 200)
        while (cluster.arrivals_left or cluster.in_flight) and cluster.now_s < max_s:
            cluster.run_until(min(cluster.now_s + step_s, max_s))
            bar.update(task, completed=len(cluster.log))
