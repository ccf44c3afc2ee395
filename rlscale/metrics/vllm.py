"""vLLM's Prometheus metric names and histogram buckets, so simulated replicas look like real ones.

Source: ``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``) of vLLM v0.11.0 for the current
names and every bucket edge below; ``vllm/engine/metrics.py`` (V0 ``Metrics``, v0.4 - v0.10) for
the older names. History of the renames (from the code comments of those files):

* ``vllm:gpu_cache_usage_perc`` -> ``vllm:kv_cache_usage_perc``: deprecated in v0.9, hidden
  behind ``--show-hidden-metrics-for-version`` in v0.11, removed in v0.12.
* ``vllm:time_per_output_token_seconds`` -> ``vllm:inter_token_latency_seconds``: deprecated in
  v0.11 (same observations, same buckets), hidden in v0.12. (v0.11 also added
  ``vllm:request_time_per_output_token_seconds``, a per-request mean -- a different metric.)
* Counters are declared without ``_total`` in V1 (``vllm:prompt_tokens``) and with it in V0;
  prometheus-client exposes both as ``<name>_total``, so the scraped name is the same.

Older V0 releases (v0.4) used shorter buckets, e.g. TTFT up to 10 s and e2e 1 - 60 s; the edges
here are the V1 ones (v0.6 - v0.11). The scraped exposition adds ``+Inf`` to every histogram.
Some pipelines (OpenTelemetry, Datadog) rewrite ``vllm:`` to ``vllm_``;
:func:`canonical_metric_name` undoes that.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

VLLM_VERSION = "v0.11.0"
"""vLLM release the names and buckets were taken from."""

MetricKind = Literal["gauge", "counter", "histogram"]

# ---- canonical names (as scraped from vLLM >= v0.11) ------------------------------------------
NUM_REQUESTS_RUNNING = "vllm:num_requests_running"
NUM_REQUESTS_WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE_PERC = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS_TOTAL = "vllm:prompt_tokens_total"
GENERATION_TOKENS_TOTAL = "vllm:generation_tokens_total"
NUM_PREEMPTIONS_TOTAL = "vllm:num_preemptions_total"
REQUEST_SUCCESS_TOTAL = "vllm:request_success_total"
TIME_TO_FIRST_TOKEN_SECONDS = "vllm:time_to_first_token_seconds"
INTER_TOKEN_LATENCY_SECONDS = "vllm:inter_token_latency_seconds"
E2E_REQUEST_LATENCY_SECONDS = "vllm:e2e_request_latency_seconds"
REQUEST_QUEUE_TIME_SECONDS = "vllm:request_queue_time_seconds"

# ---- deprecated names -------------------------------------------------------------------------
GPU_CACHE_USAGE_PERC = "vllm:gpu_cache_usage_perc"
"""Old name of :data:`KV_CACHE_USAGE_PERC` (V0 and V1 up to v0.11)."""
TIME_PER_OUTPUT_TOKEN_SECONDS = "vllm:time_per_output_token_seconds"
"""Old name of :data:`INTER_TOKEN_LATENCY_SECONDS` (V0 and V1 up to v0.11)."""

# ---- histogram bucket upper edges, seconds ----------------------------------------------------
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""``vllm:time_to_first_token_seconds`` buckets (22 edges)."""

ITL_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
"""``vllm:inter_token_latency_seconds`` (and old ``time_per_output_token_seconds``) buckets."""

REQUEST_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""``request_latency_buckets`` of loggers.py, shared by e2e, queue, prefill, decode, inference."""

E2E_BUCKETS_S = REQUEST_LATENCY_BUCKETS_S
"""``vllm:e2e_request_latency_seconds`` buckets."""
QUEUE_BUCKETS_S = REQUEST_LATENCY_BUCKETS_S
"""``vllm:request_queue_time_seconds`` buckets (imported by ``rlscale.sim.engine``)."""
QUEUE_TIME_BUCKETS_S = QUEUE_BUCKETS_S


@dataclass(frozen=True)
class MetricSpec:
    """One vLLM metric: its canonical (scraped) name, kind, old names and buckets."""

    name: str
    kind: MetricKind
    description: str
    aliases: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


METRICS: MappingProxyType[str, MetricSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        MetricSpec(NUM_REQUESTS_RUNNING, "gauge", "requests in model execution batches"),
        MetricSpec(NUM_REQUESTS_WAITING, "gauge", "requests waiting to be scheduled"),
        MetricSpec(KV_CACHE_USAGE_PERC, "gauge", "KV-cache usage, 1.0 = full",
                   aliases=(GPU_CACHE_USAGE_PERC,)),
        MetricSpec(PROMPT_TOKENS_TOTAL, "counter", "prefill tokens processed",
                   aliases=("vllm:prompt_tokens",)),
        MetricSpec(GENERATION_TOKENS_TOTAL, "counter", "generation tokens processed",
                   aliases=("vllm:generation_tokens",)),
        MetricSpec(NUM_PREEMPTIONS_TOTAL, "counter", "cumulative preemptions",
                   aliases=("vllm:num_preemptions",)),
        MetricSpec(REQUEST_SUCCESS_TOTAL, "counter", "finished requests (label finished_reason)",
                   aliases=("vllm:request_success",)),
        MetricSpec(TIME_TO_FIRST_TOKEN_SECONDS, "histogram", "time to first token, seconds",
                   buckets=TTFT_BUCKETS_S),
        MetricSpec(INTER_TOKEN_LATENCY_SECONDS, "histogram", "inter-token latency, seconds",
                   aliases=(TIME_PER_OUTPUT_TOKEN_SECONDS,), buckets=ITL_BUCKETS_S),
        MetricSpec(E2E_REQUEST_LATENCY_SECONDS, "histogram", "end-to-end request latency, seconds",
                   buckets=E2E_BUCKETS_S),
        MetricSpec(REQUEST_QUEUE_TIME_SECONDS, "histogram", "time spent WAITING, seconds",
                   buckets=QUEUE_BUCKETS_S),
    )
})  # fmt: skip
"""Every metric the simulator exports, by canonical name."""

_BY_NAME: dict[str, MetricSpec] = {
    alias: spec for spec in METRICS.values() for alias in (spec.name, *spec.aliases)
}
_SUFFIXES: dict[str, tuple[MetricKind, ...]] = {
    "_bucket": ("histogram",),
    "_sum": ("histogram",),
    "_count": ("histogram",),
    "_created": ("histogram", "counter"),
    "_total": ("counter",),
}


def exposed_names(spec: MetricSpec) -> list[str]:
    """Every name a scrape may carry for ``spec``: the current name, then the older ones
    (counters with ``_total``), all with ``vllm:``, then the same again with ``vllm_``."""
    names = [spec.name]
    for alias in spec.aliases:
        exposed = alias + "_total" if spec.kind == "counter" and not alias.endswith(
            "_total") else alias
        if exposed not in names:
            names.append(exposed)
    return names + ["vllm_" + name[len("vllm:"):] for name in names]


def _lookup(name: str) -> MetricSpec | None:
    spec = _BY_NAME.get(name)
    if spec is not None:
        return spec
    for suffix, kinds in _SUFFIXES.items():
        if name.endswith(suffix):
            spec = _BY_NAME.get(name[: -len(suffix)])
            if spec is not None and spec.kind in kinds:
                return spec
    return None


def canonical_metric_name(name: str) -> str | None:
    """The canonical vLLM metric name for any spelling of it, or ``None`` if not a known metric.

    Accepts the old and new names, ``vllm_`` for ``vllm:``, a trailing ``{labels}`` part, and the
    series suffixes prometheus-client adds (``_total`` on counters; ``_bucket``, ``_sum``,
    ``_count`` on histograms; ``_created`` on both). Counters map to their ``_total`` name,
    histograms to their base name::

        canonical_metric_name("vllm_time_per_output_token_seconds_bucket")
        # -> "vllm:inter_token_latency_seconds"
    """
    base = name.strip().split("{", 1)[0].strip()
    if base.startswith("vllm_"):
        base = "vllm:" + base[len("vllm_") :]
    spec = _lookup(base)
    return None if spec is None else spec.name


def buckets_for(name: str) -> tuple[float, ...]:
    """Histogram bucket upper edges (seconds) for any spelling of a histogram's name."""
    canonical = canonical_metric_name(name)
    if canonical is None or METRICS[canonical].kind != "histogram":
        raise KeyError(f"{name!r} is not a known vLLM histogram")
    return METRICS[canonical].buckets
