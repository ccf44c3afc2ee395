"""Run policies on workload windows through the environment, in parallel, with progress (a bar
on a terminal, timestamped lines on stderr otherwise)."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.envs.cluster_env import LLMClusterEnv
from rlscale.envs.splits import Window
from rlscale.evaluate.policies import (
    PolicySpec,
    build_policy,
    episode_policy,
    policy_observation,
)
from rlscale.progress import ProgressBar
from rlscale.sim.scenario import Scenario, load_scenario


@dataclass(frozen=True)
class Task:
    """One evaluation run: a policy on a window under a seed (cold starts, routing, faults)."""

    scenario: str
    policy: PolicySpec
    window: Window
    seed: int
    split: str


def check_policies(scenario: Scenario, specs: Sequence[PolicySpec]) -> None:
    """Build every policy once for ``scenario`` (a bundle is loaded and checked against its
    pools), so that a bad input fails before any run starts or any file is written.

    Raises:
        ConfigError: a policy cannot be built (the message names it).
    """
    pools = [p.name for p in scenario.cluster.pools]
    for spec in specs:
        env = LLMClusterEnv(scenario, observation=policy_observation(spec, pools))
        build_policy(spec, env.policy_context())


def run_task(task: Task) -> dict[str, Any]:
    """Run one episode; returns the summary row with a ``series`` of per-step values."""
    scenario = load_scenario(task.scenario)
    judged_on = policy_observation(task.policy, [p.name for p in scenario.cluster.pools])
    # Every evaluation (validation, checkpoint selection, reports) runs the request-level engine.
    env = LLMClusterEnv(scenario, {"engine": {"mode": "request"}}, window=task.window,
                        load_scale=1.0, observation=judged_on)
    observation, _ = env.reset(seed=task.seed)
    policy = episode_policy(task.policy, env.policy_context(), scenario, env.episode_workload,
                            env.offset_s)
    series: dict[str, list[Any]] = {"time_s": [], "replicas": [], "ready": [], "weights": [],
                                    "ttft_p90_s": [], "slo_attainment": [], "cost_usd": []}
    reasons: Counter[str] = Counter()
    invalid = shielded = fallbacks = 0
    for _ in range(env.config.max_episode_steps):
        decision = policy.decide(env.policy_input(observation))
        invalid += not decision.valid
        reasons[decision.reason] += 1
        observation, _, _, _, info = env.step_decision(decision)
        interventions = [*_policy_interventions(policy), *info.get("shield", [])]
        shielded += bool(interventions)
        fallbacks += any(i.startswith("Fallback") for i in interventions)
        series["time_s"].append(info["time_s"])
        series["replicas"].append(info["replicas"])
        series["ready"].append(info["ready"])
        series["weights"].append(info["weights"])
        series["ttft_p90_s"].append(info["ttft_p90_s"])
        series["slo_attainment"].append(info["slo_attainment"])
        series["cost_usd"].append(info["cost_usd"])
    series["load_rps"] = _load(env, series["time_s"])
    summary = env.episode_summary()
    return {"policy": task.policy.label, "window": task.window.name, "seed": task.seed,
            "split": task.split, **summary, "invalid_decisions": invalid,
            "shield_interventions": shielded, "fallbacks": fallbacks,
            "reasons": dict(reasons), "series": series}


def _policy_interventions(policy: object) -> tuple[str, ...]:
    """The interventions of a shielded policy's last decision (none for other policies)."""
    last = getattr(policy, "last", None)
    found = getattr(last, "interventions", ())
    return tuple(str(i) for i in found) if isinstance(found, tuple) else ()


def _load(env: LLMClusterEnv, times: list[float]) -> list[float]:
    """Requests per second that arrived in each step (the offered load)."""
    workload = env.episode_workload
    if workload is None or not times:
        return [0.0] * len(times)
    interval = env.config.control.interval_s
    edges = np.array([times[0] - interval, *times])
    counts, _ = np.histogram(workload.arrival_s, bins=edges)
    return [float(c) / interval for c in counts]


def run_tasks(tasks: list[Task], *, workers: int | None = None, progress: bool = True,
              description: str = "evaluating") -> list[dict[str, Any]]:
    """Run every task (in ``workers`` processes, default one per core) in a stable order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    indexed = list(enumerate(tasks))
    with ProgressBar(progress, description, len(tasks)) as advance:
        if workers == 1:
            for index, task in indexed:
                results[index] = run_task(task)
                advance()
        else:
            context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
            with context.Pool(workers) as pool:
                for index, row in pool.imap_unordered(_run_indexed, indexed):
                    results[index] = row
                    advance()
    return [row for row in results if row is not None]


def _run_indexed(item: tuple[int, Task]) -> tuple[int, dict[str, Any]]:
    return item[0], run_task(item[1])


def tasks_for(scenario: str | Path, policies: Iterable[PolicySpec], windows: Iterable[Window],
              seeds: Iterable[int], split: str) -> list[Task]:
    """Every (policy, window, seed) combination."""
    windows, seeds = list(windows), list(seeds)
    return [Task(str(scenario), policy, window, seed, split)
            for policy in policies for window in windows for seed in seeds]
