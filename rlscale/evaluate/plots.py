"""PNG plots of an evaluation: replicas and weights against load, TTFT over time, cost vs SLO."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.evaluate.curves import frontier


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(out: Path, rows: list[dict[str, Any]], aggregated: list[dict[str, Any]],
             pool_names: list[str], slo_ttft_s: float, slo_target: float,
             curves: Mapping[str, list[tuple[float, float]]] | None = None) -> list[Path]:
    """Write every plot into ``out``; returns their paths. ``curves``: each baseline's
    (attainment, cost) points, drawn with their frontier on the Pareto view."""
    first = rows[0]
    sample = [r for r in rows if r["window"] == first["window"] and r["seed"] == first["seed"]]
    return [
        plot_replicas(out / "replicas.png", sample, pool_names),
        plot_weights(out / "weights.png", sample, pool_names),
        plot_ttft(out / "ttft.png", sample, slo_ttft_s),
        plot_pareto(out / "pareto.png", aggregated, slo_target, curves),
    ]


def _grid(plt: Any, count: int, title: str) -> tuple[Any, Any]:
    fig, axes = plt.subplots(count, 1, figsize=(10, 2.4 * count + 0.8), sharex=True,
                             squeeze=False)
    fig.suptitle(title)
    return fig, axes[:, 0]


def plot_replicas(path: Path, rows: list[dict[str, Any]], pool_names: list[str]) -> Path:
    """Stacked desired replicas per pool and the offered load, one panel per policy; every
    panel has the same replica and load scales, so that policies compare by eye."""
    plt = _pyplot()
    window = f"{rows[0]['window']}, seed {rows[0]['seed']}"
    fig, axes = _grid(plt, len(rows), f"Replicas per pool (stacked) and load over time — {window}")
    top_replicas = max(max((sum(r) for r in row["series"]["replicas"]), default=0)
                       for row in rows)
    top_load = max(max(row["series"]["load_rps"], default=0.0) for row in rows)
    for axis, row in zip(axes, rows, strict=True):
        series = row["series"]
        minutes = np.asarray(series["time_s"]) / 60.0
        replicas = np.asarray(series["replicas"], dtype=float).T
        axis.stackplot(minutes, replicas, labels=pool_names, step="post", alpha=0.7)
        axis.set_ylabel("replicas")
        axis.set_ylim(0, max(top_replicas, 1) * 1.05)
        axis.set_title(row["policy"], fontsize=9, loc="left")
        load = axis.twinx()
        load.plot(minutes, series["load_rps"], color="black", linewidth=1.0, label="load")
        load.set_ylabel("req/s")
        load.set_ylim(0, max(top_load, 1e-9) * 1.05)
    axes[0].legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel("time (min)")
    return _save(plt, fig, path)


def plot_weights(path: Path, rows: list[dict[str, Any]], pool_names: list[str]) -> Path:
    """Effective routing share of each pool over time, one panel per policy."""
    plt = _pyplot()
    fig, axes = _grid(plt, len(rows), "Routing weight (share of traffic) per pool over time")
    for axis, row in zip(axes, rows, strict=True):
        series = row["series"]
        minutes = np.asarray(series["time_s"]) / 60.0
        weights = np.asarray(series["weights"], dtype=float)
        for index, name in enumerate(pool_names):
            axis.step(minutes, weights[:, index], where="post", label=name)
        axis.set_ylim(-0.05, 1.05)
        axis.set_ylabel("share")
        axis.set_title(row["policy"], fontsize=9, loc="left")
    axes[0].legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel("time (min)")
    return _save(plt, fig, path)


def plot_ttft(path: Path, rows: list[dict[str, Any]], slo_ttft_s: float) -> Path:
    """p90 time to first token of the requests ending in each step, every policy."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(10, 4))
    for row in rows:
        series = row["series"]
        axis.plot(np.asarray(series["time_s"]) / 60.0, series["ttft_p90_s"], label=row["policy"])
    axis.axhline(slo_ttft_s, color="red", linestyle="--", linewidth=1, label="TTFT SLO")
    axis.set_yscale("log")
    axis.set_xlabel("time (min)")
    axis.set_ylabel("TTFT p90 (s)")
    axis.set_title("Time to first token (p90 per control step)")
    axis.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_pareto(path: Path, aggregated: list[dict[str, Any]], slo_target: float,
                curves: Mapping[str, list[tuple[float, float]]] | None = None) -> Path:
    """Cost against SLO attainment per policy (means with 95 % CIs) and each baseline's swept
    points with their frontier (a line); lower right is better."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(8, 5.5))
    for name, points in (curves or {}).items():
        atts, costs = [a for a, _ in points], [c for _, c in points]
        line = frontier(atts, costs)
        drawn = axis.plot([c for _, c in line], [a for a, _ in line], "-", linewidth=1.2,
                          label=f"{name} curve")
        axis.scatter(costs, atts, s=9, alpha=0.45, color=drawn[0].get_color())
    for row in aggregated:
        x_err = None if np.isnan(row["cost_usd_ci95"]) else row["cost_usd_ci95"]
        y_err = None if np.isnan(row["slo_attainment_ci95"]) else row["slo_attainment_ci95"]
        axis.errorbar(row["cost_usd"], row["slo_attainment"], xerr=x_err, yerr=y_err, fmt="o",
                      capsize=3, label=row["policy"])
        axis.annotate(row["policy"], (row["cost_usd"], row["slo_attainment"]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    axis.axhline(slo_target, color="grey", linestyle=":", linewidth=1,
                 label=f"SLO target {slo_target:.0%}")
    axis.set_xlabel("GPU cost per episode (USD)")
    axis.set_ylabel("SLO attainment")
    axis.set_title("Cost vs SLO attainment (Pareto view)")
    axis.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
