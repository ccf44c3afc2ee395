"""A vLLM pod's ``/metrics`` page: render a :class:`PodSample` to it and parse it back.

The simulator serves this text for its pods and the controller scrapes it from real ones, so both
reach :class:`~rlscale.metrics.snapshot.PodSample` through :func:`parse_pod_metrics`.

Rendering uses prometheus-client (a custom collector on a private registry), as vLLM does, so the
format is the one vLLM serves: ``# HELP`` / ``# TYPE`` lines, counters as ``<name>_total``,
histograms as ``_bucket{le=...}`` (``+Inf`` last), ``_sum`` and ``_count``, and vLLM's labels
``model_name`` and ``engine`` (``vllm:request_success_total`` also has ``finished_reason``).
No ``_created`` series are written (as with ``PROMETHEUS_DISABLE_CREATED_SERIES``); the parser
ignores them.

Parsing accepts every spelling :func:`~rlscale.metrics.vllm.canonical_metric_name` knows: new
and old names, ``vllm:`` or ``vllm_``. Counts (running, waiting, counters, histogram buckets) are
summed over label sets (several ``model_name``, ``engine`` or ``finished_reason`` values); the
KV-cache usage, a fraction, is averaged over them. When a page serves one metric under two
spellings (vLLM v0.9 - v0.11 serve the deprecated name next to the new one, with the same
observations) only one spelling is read: the new name before the old, ``vllm:`` before ``vllm_``.

prometheus-client (the ``controller`` extra) is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from rlscale.metrics.snapshot import HistogramData, PodSample
from rlscale.metrics.vllm import (
    E2E_REQUEST_LATENCY_SECONDS,
    GENERATION_TOKENS_TOTAL,
    GPU_CACHE_USAGE_PERC,
    INTER_TOKEN_LATENCY_SECONDS,
    KV_CACHE_USAGE_PERC,
    METRICS,
    NUM_PREEMPTIONS_TOTAL,
    NUM_REQUESTS_RUNNING,
    NUM_REQUESTS_WAITING,
    PROMPT_TOKENS_TOTAL,
    REQUEST_QUEUE_TIME_SECONDS,
    REQUEST_SUCCESS_TOTAL,
    TIME_PER_OUTPUT_TOKEN_SECONDS,
    TIME_TO_FIRST_TOKEN_SECONDS,
    MetricSpec,
    canonical_metric_name,
    exposed_names,
)

Spelling = Literal["new", "old", "underscore"]
"""``new``: vLLM >= v0.11 names; ``old``: ``gpu_cache_usage_perc`` and
``time_per_output_token_seconds``; ``underscore``: new names with ``vllm_`` for ``vllm:``."""

FINISHED_REASONS = ("stop", "length", "abort")
"""vLLM's ``finished_reason`` label values; a rendered pod reports every success as ``stop``."""

_OLD_NAMES = {KV_CACHE_USAGE_PERC: GPU_CACHE_USAGE_PERC,
              INTER_TOKEN_LATENCY_SECONDS: TIME_PER_OUTPUT_TOKEN_SECONDS}

# PodSample field for each canonical metric name.
_GAUGES = {NUM_REQUESTS_RUNNING: "num_requests_running",
           NUM_REQUESTS_WAITING: "num_requests_waiting",
           KV_CACHE_USAGE_PERC: "kv_cache_usage_perc"}
_COUNTERS = {PROMPT_TOKENS_TOTAL: "prompt_tokens_total",
             GENERATION_TOKENS_TOTAL: "generation_tokens_total",
             NUM_PREEMPTIONS_TOTAL: "num_preemptions_total",
             REQUEST_SUCCESS_TOTAL: "request_success_total"}
_HISTOGRAMS = {TIME_TO_FIRST_TOKEN_SECONDS: "time_to_first_token_seconds",
               INTER_TOKEN_LATENCY_SECONDS: "inter_token_latency_seconds",
               E2E_REQUEST_LATENCY_SECONDS: "e2e_request_latency_seconds",
               REQUEST_QUEUE_TIME_SECONDS: "request_queue_time_seconds"}


class MetricsParseError(ValueError):
    """A ``/metrics`` page lacks a vLLM metric or serves it malformed (the message says which)."""


# ---------------------------------------------------------------------------------- rendering
def exposed_name(canonical: str, spelling: Spelling = "new") -> str:
    """The name a pod of the given ``spelling`` declares for ``canonical`` (counters without
    ``_total``; prometheus-client appends it when exposing)."""
    name = _OLD_NAMES.get(canonical, canonical) if spelling == "old" else canonical
    if METRICS[canonical].kind == "counter" and name.endswith("_total"):
        name = name[: -len("_total")]
    return "vllm_" + name[len("vllm:"):] if spelling == "underscore" else name


def render_pod_metrics(sample: PodSample, *, model_name: str,
                       spelling: Spelling = "new") -> str:
    """The Prometheus text exposition (format 0.0.4) a vLLM pod serves at ``/metrics``.

    Args:
        sample: the pod's metrics (latency histograms in seconds).
        model_name: vLLM's ``--served-model-name``, written as the ``model_name`` label.
        spelling: which metric names to use (see :data:`Spelling`).
    """
    if spelling not in ("new", "old", "underscore"):
        raise ValueError(f"spelling must be 'new', 'old' or 'underscore', got {spelling!r}")
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PodCollector(sample, model_name, spelling))
    text: bytes = generate_latest(registry)
    return text.decode("utf-8")


class _PodCollector:
    """A prometheus-client collector yielding one pod's vLLM metric families."""

    def __init__(self, sample: PodSample, model_name: str, spelling: Spelling) -> None:
        self.sample = sample
        self.labels = {"model_name": model_name, "engine": "0"}
        self.spelling = spelling

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        go_float: Callable[[float], str] = floatToGoString  # the le text vLLM's buckets get
        names = list(self.labels)
        values = list(self.labels.values())
        for canonical, spec in METRICS.items():
            name = exposed_name(canonical, self.spelling)
            family: Any
            if canonical in _GAUGES:
                family = GaugeMetricFamily(name, spec.description, labels=names)
                family.add_metric(values, float(getattr(self.sample, _GAUGES[canonical])))
            elif canonical in _COUNTERS:
                value = float(getattr(self.sample, _COUNTERS[canonical]))
                if canonical == REQUEST_SUCCESS_TOTAL:
                    family = CounterMetricFamily(name, spec.description,
                                                 labels=[*names, "finished_reason"])
                    for reason in FINISHED_REASONS:
                        family.add_metric([*values, reason], value if reason == "stop" else 0.0)
                else:
                    family = CounterMetricFamily(name, spec.description, labels=names)
                    family.add_metric(values, value)
            else:
                hist: HistogramData = getattr(self.sample, _HISTOGRAMS[canonical])
                family = HistogramMetricFamily(name, spec.description, labels=names)
                les = [go_float(edge) for edge in hist.edges] + ["+Inf"]
                buckets = [(le, float(c)) for le, c in zip(les, hist.cumulative, strict=True)]
                family.add_metric(values, buckets, sum_value=hist.sum)
            yield family


# ---------------------------------------------------------------------------------- parsing
@dataclass
class _Series:
    """The samples of one metric under one spelling, by label set (``le`` left out)."""

    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    buckets: dict[tuple[tuple[str, str], ...], dict[float, float]] = field(default_factory=dict)
    sums: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    counts: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)


def _stem(name: str, spec: MetricSpec) -> str:
    """``name`` with ``vllm_`` as ``vllm:`` and the series suffix removed."""
    if name.startswith("vllm_"):
        name = "vllm:" + name[len("vllm_"):]
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",),
                "gauge": ()}[spec.kind]
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _spelling_rank(sample_name: str, spec: MetricSpec) -> tuple[int, int]:
    """(0 for the current name or 1 for an old one, 0 for ``vllm:`` or 1 for ``vllm_``)."""
    current = _stem(spec.name, spec)
    return (0 if _stem(sample_name, spec) == current else 1,
            1 if sample_name.startswith("vllm_") else 0)


def _looked_for(spec: MetricSpec) -> list[str]:
    """Every exposed spelling of ``spec`` other than its canonical name."""
    return exposed_names(spec)[1:]


def _series_kind(sample_name: str, spec: MetricSpec) -> str | None:
    """Which series of the metric a sample belongs to: value, bucket, sum, count or None."""
    if sample_name.endswith("_created"):
        return None
    if spec.kind != "histogram":
        return "value"
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            return suffix[1:]
    return None


def _collect(text: str) -> dict[str, dict[tuple[int, int], _Series]]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[tuple[int, int], _Series]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                canonical = canonical_metric_name(sample.name)
                if canonical is None:
                    continue
                spec = METRICS[canonical]
                kind = _series_kind(sample.name, spec)
                if kind is None:
                    continue
                series = found.setdefault(canonical, {}).setdefault(
                    _spelling_rank(sample.name, spec), _Series())
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                value = float(sample.value)
                if kind == "bucket":
                    le = sample.labels.get("le")
                    try:
                        edge = float(le) if le is not None else math.nan
                    except ValueError:
                        edge = math.nan
                    if math.isnan(edge):
                        raise MetricsParseError(
                            f"{sample.name}: bucket label le={le!r} is not a number")
                    series.buckets.setdefault(labels, {})[edge] = value
                elif kind == "sum":
                    series.sums[labels] = value
                elif kind == "count":
                    series.counts[labels] = value
                else:
                    series.values[labels] = value
    except MetricsParseError:
        raise
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on bad text
        raise MetricsParseError(f"not Prometheus text exposition format: {exc}") from exc
    return found


def _label_text(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


def _count(name: str, labels: tuple[tuple[str, str], ...], value: float, what: str) -> int:
    """``value`` as a non-negative integer count, or a MetricsParseError saying what is wrong."""
    if not math.isfinite(value):
        raise MetricsParseError(f"{_label_text(name, labels)}{what} is {value} "
                                "(expected a finite count)")
    if value < 0 or not value.is_integer():
        raise MetricsParseError(f"{_label_text(name, labels)}{what} is {value} "
                                "(expected a non-negative integer count)")
    return int(value)


def _scalar(name: str, series: _Series) -> float:
    if not series.values:
        raise MetricsParseError(f"{name} has no samples")
    if name == KV_CACHE_USAGE_PERC:
        for labels, value in series.values.items():
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise MetricsParseError(f"{_label_text(name, labels)} is {value} "
                                        "(expected a fraction in [0, 1])")
        return sum(series.values.values()) / len(series.values)
    return float(sum(_count(name, labels, value, "")
                     for labels, value in series.values.items()))


def _histogram(name: str, series: _Series) -> HistogramData:
    if not series.buckets:
        raise MetricsParseError(f"{name} has no {name}_bucket series")
    edges: tuple[float, ...] | None = None
    total: list[int] = []
    total_sum = 0.0
    for labels, buckets in series.buckets.items():
        where = _label_text(name + "_bucket", labels)
        les = sorted(buckets)
        if les[-1] != math.inf:
            raise MetricsParseError(f'{where} has no le="+Inf" bucket')
        finite = tuple(les[:-1])
        if edges is None:
            edges, total = finite, [0] * len(les)
        elif finite != edges:
            raise MetricsParseError(
                f"{where}: bucket edges {finite} differ from another label set's {edges}")
        counts = [_count(name + "_bucket", labels, buckets[le], f' le="{le}"') for le in les]
        if any(b < a for a, b in pairwise(counts)):
            raise MetricsParseError(f"{where}: cumulative bucket counts decrease: {counts}")
        if labels not in series.sums:
            raise MetricsParseError(f"{_label_text(name + '_sum', labels)} missing")
        value = series.sums[labels]
        if not math.isfinite(value):
            raise MetricsParseError(f"{_label_text(name + '_sum', labels)} is {value} "
                                    "(expected a finite number of seconds)")
        if labels in series.counts and series.counts[labels] != counts[-1]:
            raise MetricsParseError(
                f"{_label_text(name + '_count', labels)} is {series.counts[labels]} but the "
                f'le="+Inf" bucket is {counts[-1]} (they must be equal)')
        total = [t + c for t, c in zip(total, counts, strict=True)]
        total_sum += value
    assert edges is not None
    return HistogramData(edges, tuple(total), total_sum)


def parse_pod_metrics(text: str, *, pod: str, pool: str) -> PodSample:
    """Read a vLLM pod's ``/metrics`` page (Prometheus text format) into a :class:`PodSample`.

    Args:
        text: the page as served by vLLM (any version with these metrics, any spelling).
        pod: the pod's name; pool: its pool (Deployment) name. Neither is read from the text.

    Raises:
        MetricsParseError: the text is not Prometheus' format, or a metric is missing or
            malformed (NaN, negative or fractional counts, missing ``+Inf`` bucket, ...); the
            message names the metric and what is wrong.
    """
    found = _collect(text)
    fields: dict[str, Any] = {}
    for canonical, spec in METRICS.items():
        spellings = found.get(canonical)
        if not spellings:
            raise MetricsParseError(
                f"{canonical} missing (also looked for {', '.join(_looked_for(spec))})")
        series = spellings[min(spellings)]
        if canonical in _HISTOGRAMS:
            fields[_HISTOGRAMS[canonical]] = _histogram(canonical, series)
        elif canonical in _GAUGES:
            value = _scalar(canonical, series)
            fields[_GAUGES[canonical]] = value if canonical == KV_CACHE_USAGE_PERC else int(value)
        else:
            fields[_COUNTERS[canonical]] = int(_scalar(canonical, series))
    return PodSample(pod=pod, pool=pool, **fields)
