"""The end of a training run: the held-out evaluation table and the learning curve."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.plots import plot_all
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.report import aggregate, markdown_table, write_results
from rlscale.evaluate.runner import run_tasks, tasks_for
from rlscale.evaluate.tune import tuning_config
from rlscale.sim.scenario import Scenario
from rlscale.training.callbacks import ValidationCallback
from rlscale.training.config import TrainConfig


def final_evaluation(config: TrainConfig, scenario: Scenario, out: Path, bundle: Path,
                     tuned: list[PolicySpec], *, workers: int | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Run the trained policy and the tuned baselines on the held-out windows; print and save
    the table (``evaluation/``) and the ratios the issue asks for."""

    wanted = [t for t in tuned if t.name in config.eval.final_policies]
    specs = [PolicySpec("ppo", {"bundle": str(bundle)}), *wanted]
    windows = scenario_splits(scenario, env_config(scenario).episode.duration_s).windows(
        config.eval.final_split)
    rows = run_tasks(tasks_for(config.scenario, specs, windows, config.eval.final_seeds,
                               config.eval.final_split), workers=workers, progress=progress,
                     description=f"final evaluation on {config.eval.final_split} windows")
    aggregated = aggregate(rows)
    target = tuning_config(scenario).slo_target
    directory = out / "evaluation"
    write_results(directory, rows, aggregated, {"scenario": scenario.name,
                                                "split": config.eval.final_split,
                                                "seeds": list(config.eval.final_seeds)})
    plot_all(directory, rows, aggregated, [p.name for p in scenario.cluster.pools],
             scenario.slo.ttft_s, target)
    table = markdown_table(aggregated)
    ratios = headline_ratios(aggregated)
    lines = [table, "", *[f"- {k}: {v:.3f}" for k, v in ratios.items()]]
    (directory / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    return {"evaluation": str(directory), "ratios": ratios, "aggregated": aggregated,
            "split": config.eval.final_split, "seeds": list(config.eval.final_seeds)}


def _row(aggregated: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for row in aggregated:
        if row["policy"].split("(")[0] == name:
            return row
    return None


def headline_ratios(aggregated: list[dict[str, Any]]) -> dict[str, float]:
    """Cost ratios of the trained policy to the tuned HPA, planner and oracle; the seed paper's
    three ratios against static (end-to-end latency, throughput, utilization)."""
    ppo = _row(aggregated, "ppo")
    if ppo is None:
        return {}
    ratios: dict[str, float] = {}
    for name in ("hpa", "planner", "oracle"):
        other = _row(aggregated, name)
        if other is not None and other["cost_usd"] > 0:
            ratios[f"cost_ratio_to_{name}"] = ppo["cost_usd"] / other["cost_usd"]
            ratios[f"slo_attainment_minus_{name}"] = ppo["slo_attainment"] - other[
                "slo_attainment"]
    static = _row(aggregated, "static")
    if static is not None:
        for key, metric in (("e2e_latency_ratio_to_static", "e2e_mean_s"),
                            ("throughput_ratio_to_static", "throughput_tok_s"),
                            ("kv_utilization_ratio_to_static", "kv_utilization")):
            if static[metric] and not math.isnan(static[metric]):
                ratios[key] = ppo[metric] / static[metric]
    return ratios


def plot_learning_curve(out: Path, validation: ValidationCallback | None) -> Path:
    """``learning_curve.png``: episode reward (monitor logs, smoothed) against environment
    steps, and the validation cost and SLO attainment at each validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes: list[tuple[float, float, int]] = []
    for path in sorted((out / "monitor").glob("*.monitor.csv")):
        with path.open() as handle:
            handle.readline()  # the monitor's JSON header
            episodes.extend((float(r["t"]), float(r["r"]), int(r["l"]))
                            for r in csv.DictReader(handle))
    episodes.sort()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    imitation = out / "imitation.json"
    warm_steps = (json.loads(imitation.read_text())["rounds"][-1]["samples"]
                  if imitation.exists() else 0)
    if warm_steps:  # the warm start's episodes come first: PPO's steps count from 0
        axes[0].axvspan(-warm_steps, 0, color="0.9", label="imitation (cloning, DAgger)")
    if episodes:
        steps = np.cumsum([length for _, _, length in episodes]) - warm_steps
        rewards = np.array([reward for _, reward, _ in episodes])
        window = max(1, len(rewards) // 20)
        smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
        axes[0].plot(steps, rewards, alpha=0.25, label="episode")
        axes[0].plot(steps[window - 1:], smooth, label=f"mean of {window}")
        axes[0].legend(fontsize=8)
    axes[0].set_xlabel("PPO environment steps" + (" (imitation before 0)" if warm_steps
                                                  else ""))
    axes[0].set_ylabel("episode reward")
    axes[0].set_title("Training reward")
    if validation is not None and validation.history:
        history = validation.history
        x = [h["steps"] for h in history]
        axes[1].plot(x, [h["cost_usd"] for h in history], "o-", label="policy cost")
        for i, name in enumerate(history[-1]["baselines"], start=1):  # C0 is the policy's
            axes[1].axhline(history[-1]["baselines"][name]["cost_usd"], linestyle="--",
                            linewidth=1, color=f"C{i}", label=f"{name} cost")
        twin = axes[1].twinx()
        twin.plot(x, [h["slo_attainment"] for h in history], "s:", color="black",
                  label="policy SLO attainment")
        twin.set_ylabel("SLO attainment")
        lines, labels = axes[1].get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        axes[1].legend(lines + more, labels + more_labels, fontsize=7, loc="center right")
    axes[1].set_xlabel("environment steps")
    axes[1].set_ylabel("validation cost per episode (USD)")
    axes[1].set_title("Validation against tuned baselines")
    fig.tight_layout()
    path = out / "learning_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
