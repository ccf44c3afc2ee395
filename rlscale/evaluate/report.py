"""Aggregate evaluation rows (means with 95 % confidence intervals) and write them out."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.evaluate.curves import EqualSlo

METRICS = ("slo_attainment", "cost_usd", "gpu_hours", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s",
           "itl_p50_s", "itl_p90_s", "itl_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
           "e2e_mean_s", "kv_utilization", "throughput_tok_s", "failed", "requests",
           "scaling_actions", "invalid_decisions", "shield_interventions", "fallbacks")
"""Columns of results.csv, in order (seconds, dollars, GPU-hours, fractions, counts;
``shield_interventions`` and ``fallbacks`` count decisions per episode)."""

# Two-sided 95 % Student-t quantiles by degrees of freedom (1-30); 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student's t); NaNs dropped."""
    clean = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(clean) == 0:
        return math.nan, math.nan
    mean = float(clean.mean())
    if len(clean) == 1:
        return mean, math.nan
    t = _T95[len(clean) - 2] if len(clean) - 1 <= len(_T95) else 1.96
    return mean, float(t * clean.std(ddof=1) / math.sqrt(len(clean)))


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per policy: ``<metric>`` (mean) and ``<metric>_ci95`` over windows x seeds."""
    out = []
    for policy in dict.fromkeys(row["policy"] for row in rows):
        mine = [row for row in rows if row["policy"] == policy]
        agg: dict[str, Any] = {"policy": policy, "window": "all", "seed": "all",
                               "runs": len(mine), "split": mine[0]["split"]}
        for metric in METRICS:
            mean, half = ci95([float(row.get(metric, math.nan)) for row in mine])
            agg[metric], agg[f"{metric}_ci95"] = mean, half
        out.append(agg)
    return out


def write_results(out: Path, rows: list[dict[str, Any]], aggregated: list[dict[str, Any]],
                  meta: dict[str, Any]) -> None:
    """``results.csv`` (a row per run, then the aggregated rows) and ``results.json``."""
    out.mkdir(parents=True, exist_ok=True)
    agg_columns = ["policy", "window", "seed", "split", "runs",
                   *[c for m in METRICS for c in (m, f"{m}_ci95")]]
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(agg_columns)
        for row in rows:
            writer.writerow([row.get(c, "") if c != "runs" else 1 for c in agg_columns])
        for row in aggregated:
            writer.writerow([row.get(c, "") for c in agg_columns])
    runs = [{k: v for k, v in row.items() if k != "series"} for row in rows]
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "runs": runs, "aggregated": aggregated,
         "series": {f"{r['policy']}|{r['window']}|{r['seed']}": r["series"] for r in rows}},
        indent=1, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def markdown_table(aggregated: list[dict[str, Any]],
                   equal_slo: Mapping[str, Mapping[str, EqualSlo]] | None = None) -> str:
    """The headline table (means ± 95 % CI half-widths); with ``equal_slo`` (``{policy:
    {curve: EqualSlo}}``) a column per curve with the policy's cost at equal SLO."""
    curves = list(dict.fromkeys(c for per in (equal_slo or {}).values() for c in per))
    header = ("| policy | SLO attainment | cost ($) | GPU-h | TTFT p90 (s) | ITL p90 (s) | "
              "e2e mean (s) | KV util | failed | scaling actions | shield | fallbacks |"
              + "".join(f" cost at equal SLO vs {c} |" for c in curves))
    lines = [header, "|" + "---|" * (12 + len(curves))]
    for row in aggregated:
        ratios = (equal_slo or {}).get(row["policy"], {})
        lines.append(
            f"| {row['policy']} | {_pm(row, 'slo_attainment', '.1%')} | "
            f"{_pm(row, 'cost_usd', '.2f')} | {_pm(row, 'gpu_hours', '.2f')} | "
            f"{_pm(row, 'ttft_p90_s', '.2f')} | {_pm(row, 'itl_p90_s', '.3f')} | "
            f"{_pm(row, 'e2e_mean_s', '.1f')} | {_pm(row, 'kv_utilization', '.1%')} | "
            f"{row['failed']:.0f} | {row['scaling_actions']:.0f} | "
            f"{_count(row, 'shield_interventions')} | {_count(row, 'fallbacks')} |"
            + "".join(f" {ratios[c].text() if c in ratios else '—'} |" for c in curves))
    return "\n".join(lines)


def _count(row: dict[str, Any], metric: str) -> str:
    value = row.get(metric, math.nan)
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def _pm(row: dict[str, Any], metric: str, fmt: str) -> str:
    mean, half = row[metric], row[f"{metric}_ci95"]
    if math.isnan(mean):
        return "n/a"
    if math.isnan(half):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(half, fmt)}"
