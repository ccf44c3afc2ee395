"""The observation's entries, declared once: name, formula, unit of the measured quantity, range.

:class:`~rlscale.metrics.observation.ObservationBuilder` takes its names, units (the formulas)
and bounds from :data:`POOL_FEATURES` and :data:`GLOBAL_FEATURES`, a bundle stores them, and
the table in :mod:`rlscale.metrics.observation`'s docstring is :func:`feature_table`'s text (a
test keeps the two equal). Changing an entry changes what trained policies see: bundles record
the names and ranges and are refused by a builder whose entries differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One entry of the observation vector.

    Attributes:
        name: the entry's name (per pool: ``<pool>/<name>``).
        formula: how it is computed from the measured quantity and the config (what the
            builder's ``units`` and a bundle's ``observation.units`` hold).
        unit: the unit of the measured quantity before normalization.
        low / high: the range every value is clipped to.
    """

    name: str
    formula: str
    unit: str
    low: float
    high: float


POOL_FEATURES: tuple[Feature, ...] = (
    Feature("ready_frac", "ready replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("starting_frac", "starting replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("pending_frac", "pending replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("draining_frac", "draining replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("arrival_short", "req/s (short window) / (capacity_rps x max_replicas)", "req/s",
            0.0, 10.0),
    Feature("arrival_long", "req/s (long window) / (capacity_rps x max_replicas)", "req/s",
            0.0, 10.0),
    Feature("prompt_tokens",
            "log1p(prompt tokens/s / (max_replicas x max_num_seqs / slo_itl_s))", "tokens/s",
            0.0, 10.0),
    Feature("generation_tokens",
            "log1p(generation tokens/s / (max_replicas x max_num_seqs / slo_itl_s))",
            "tokens/s", 0.0, 10.0),
    Feature("running", "running requests / max(ready, 1) / max_num_seqs", "requests",
            0.0, 10.0),
    Feature("waiting", "log1p(waiting requests / max(ready, 1)) / log1p(max_num_seqs)",
            "requests", 0.0, 10.0),
    Feature("kv_cache_usage", "fraction of KV-cache blocks in use (mean over pods)", "fraction",
            0.0, 1.0),
    Feature("ttft_p50", "TTFT p50 s / slo_ttft_s", "s", 0.0, 10.0),
    Feature("ttft_p90", "TTFT p90 s / slo_ttft_s", "s", 0.0, 10.0),
    Feature("ttft_p99", "TTFT p99 s / slo_ttft_s", "s", 0.0, 10.0),
    Feature("itl_p50", "inter-token latency p50 s / slo_itl_s", "s", 0.0, 10.0),
    Feature("itl_p90", "inter-token latency p90 s / slo_itl_s", "s", 0.0, 10.0),
    Feature("ttft_slo_violation", "fraction of TTFTs > slo_ttft_s", "fraction", 0.0, 1.0),
    Feature("itl_slo_violation", "fraction of inter-token gaps > slo_itl_s", "fraction",
            0.0, 1.0),
    Feature("has_traffic", "1 if the interval has TTFT observations, else 0", "flag",
            0.0, 1.0),
    Feature("routing_share", "weight / sum of weights of pools with ready replicas", "weight",
            0.0, 1.0),
    Feature("free_gpus", "free GPUs of its type / gpu_inventory", "GPUs", 0.0, 1.0),
    Feature("price", "price_per_replica_hour / max over pools", "$/replica-hour", 0.0, 1.0),
)
"""Per-pool entries, in observation order (pools in config order, each with all of these)."""

GLOBAL_FEATURES: tuple[Feature, ...] = (
    Feature("arrival_short", "total req/s (short window) / sum of capacity_rps x max_replicas",
            "req/s", 0.0, 10.0),
    Feature("arrival_long", "total req/s (long window) / sum of capacity_rps x max_replicas",
            "req/s", 0.0, 10.0),
    Feature("time_of_day_sin", "sin(2 pi (time_s mod day_length_s) / day_length_s)", "s",
            -1.0, 1.0),
    Feature("time_of_day_cos", "cos(2 pi (time_s mod day_length_s) / day_length_s)", "s",
            -1.0, 1.0),
)
"""Global entries, after every pool's."""


def feature_table(indent: str = "") -> str:
    """The entries as the text of a reStructuredText literal block: per entry, its index (per
    pool, then ``g<i>`` for the global ones), name, unit and range, and below it its formula."""
    def rows(features: Sequence[Feature], prefix: str, index: str) -> list[str]:
        out = []
        for i, f in enumerate(features):
            out.append(f"{indent}{index + str(i):<4s}{prefix + f.name:<26s}"
                       f"[{f.unit}; {f.low:g} - {f.high:g}]")
            out.append(f"{indent}    {f.formula}")
        return out

    return "\n".join([*rows(POOL_FEATURES, "<p>/", ""), *rows(GLOBAL_FEATURES, "", "g")])
