"""The observation's entries, declared once: name, formula, unit of the measured quantity, range.

:class:`~rlscale.metrics.observation.ObservationBuilder` takes its names, units (the formulas)
and bounds from :data:`FEATURE_VERSIONS` (the config's ``feature_version``), a bundle stores
them, and the table in :mod:`rlscale.metrics.observation`'s docstring is
:func:`feature_table`'s text (a test keeps the two equal). Changing an entry changes what
trained policies see: bundles record the names and ranges and are refused by a builder whose
entries differ, so a change is a new version, and the builder keeps building the old ones
for the bundles trained on them.
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


_REPLICAS: tuple[Feature, ...] = (
    Feature("ready_frac", "ready replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("starting_frac", "starting replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("pending_frac", "pending replicas / max_replicas", "replicas", 0.0, 10.0),
    Feature("draining_frac", "draining replicas / max_replicas", "replicas", 0.0, 10.0),
)

_LOAD_V1: tuple[Feature, ...] = (
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
)

_LOAD_V2: tuple[Feature, ...] = (
    Feature("arrival_trend", "req/s (short window) / req/s (long window); 0 without arrivals",
            "ratio", 0.0, 10.0),
    Feature("prefill_load", "prompt tokens/s (short window) / (prefill_tok_s x max(ready, 1))",
            "tokens/s", 0.0, 10.0),
    Feature("prefill_load_long",
            "prompt tokens/s (long window) / (prefill_tok_s x max(ready, 1))", "tokens/s",
            0.0, 10.0),
    Feature("decode_load",
            "generation tokens/s (short window) / (decode_tok_s x max(ready, 1))", "tokens/s",
            0.0, 10.0),
)

_STATE: tuple[Feature, ...] = (
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

_TIME: tuple[Feature, ...] = (
    Feature("time_of_day_sin", "sin(2 pi (time_s mod day_length_s) / day_length_s)", "s",
            -1.0, 1.0),
    Feature("time_of_day_cos", "cos(2 pi (time_s mod day_length_s) / day_length_s)", "s",
            -1.0, 1.0),
)

_GLOBAL_LOAD_V1: tuple[Feature, ...] = (
    Feature("arrival_short", "total req/s (short window) / sum of capacity_rps x max_replicas",
            "req/s", 0.0, 10.0),
    Feature("arrival_long", "total req/s (long window) / sum of capacity_rps x max_replicas",
            "req/s", 0.0, 10.0),
)

_GLOBAL_LOAD_V2: tuple[Feature, ...] = (
    Feature("prefill_load",
            "total prompt tokens/s (short window) / sum of prefill_tok_s x max_replicas",
            "tokens/s", 0.0, 10.0),
    Feature("decode_load",
            "total generation tokens/s (short window) / sum of decode_tok_s x max_replicas",
            "tokens/s", 0.0, 10.0),
)

FEATURE_VERSIONS: dict[int, tuple[tuple[Feature, ...], tuple[Feature, ...]]] = {
    1: ((*_REPLICAS, *_LOAD_V1, *_STATE), (*_GLOBAL_LOAD_V1, *_TIME)),
    2: ((*_REPLICAS, *_LOAD_V2, *_STATE), (*_GLOBAL_LOAD_V2, *_TIME)),
}
"""Per version (:attr:`~rlscale.metrics.observation_config.ObservationConfig.feature_version`):
the per-pool entries in observation order (pools in config order, each with all of them),
then the global entries, after every pool's. The versions differ only in their load entries
(indices 4-7 and g0-g1): version 1 measures load in requests/s against ``capacity_rps``,
a figure that holds for one length mix only; version 2 in prompt and generated tokens/s
against each pool's token capacities from its profile, the same units whatever the mix."""

CURRENT_VERSION = 2
"""The version new training environments build."""

POOL_FEATURES, GLOBAL_FEATURES = FEATURE_VERSIONS[CURRENT_VERSION]
"""The current version's per-pool and global entries."""


def feature_table(indent: str = "", version: int = CURRENT_VERSION) -> str:
    """The entries of ``version`` as the text of a reStructuredText literal block: per entry,
    its index (per pool, then ``g<i>`` for the global ones), name, unit and range, and below
    it its formula."""
    pool, glob = FEATURE_VERSIONS[version]
    def rows(features: Sequence[Feature], prefix: str, index: str) -> list[str]:
        out = []
        for i, f in enumerate(features):
            out.append(f"{indent}{index + str(i):<4s}{prefix + f.name:<26s}"
                       f"[{f.unit}; {f.low:g} - {f.high:g}]")
            out.append(f"{indent}    {f.formula}")
        return out

    return "\n".join([*rows(pool, "<p>/", ""), *rows(glob, "", "g")])
