"""Metrics from Prometheus: instant queries that rebuild each pod's vLLM sample.

For every namespace of the pools, one PromQL instant query (``GET /api/v1/query``) per metric,
summed by pod, that accepts every spelling vLLM has used (new and old names, ``vllm:`` and
``vllm_``) joined with ``or`` (the first spelling present wins, as in
:func:`~rlscale.metrics.exposition.parse_pod_metrics`)::

    sum by (pod) (vllm:num_requests_running{namespace="llm"}
                  or vllm_num_requests_running{namespace="llm"})
    avg by (pod) (vllm:kv_cache_usage_perc{namespace="llm"} or vllm_kv_cache_usage_perc{...}
                  or vllm:gpu_cache_usage_perc{...} or vllm_gpu_cache_usage_perc{...})
    sum by (pod, le) (vllm:time_to_first_token_seconds_bucket{...} or ...)
    sum by (pod) (vllm:time_to_first_token_seconds_sum{...} or ...)
    max by (pod) (timestamp(vllm:num_requests_running{...} or ...))   # sample times

Raw counters and buckets are read (not ``rate``): the controller takes deltas between its own
snapshots, exactly as with a direct scrape and as the simulator's observations do. Pods are
matched to pools through the Kubernetes pod list (``pod`` and ``namespace`` labels, as set by
the Prometheus Operator's PodMonitor or the usual ``kubernetes_sd`` relabeling). A pod whose
newest sample is older than ``staleness_s`` is left out (``StaleSample``); a pool all of whose
pods are stale is ``stale``; Prometheus down or answering an error is ``missing``: never zero.
"""

from __future__ import annotations

import itertools
import json
import math
import urllib.error
import urllib.parse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rlscale.configschema import ConfigError, Section
from rlscale.controller.cluster_state import ClusterReader, PodInfo
from rlscale.controller.problems import Problem
from rlscale.controller.resources import PoolConfig
from rlscale.controller.sources import (
    MAX_TIMEOUT_S,
    CollectedMetrics,
    Fetch,
    http_get,
    pod_problem,
    pools_without_metrics,
)
from rlscale.metrics.snapshot import HistogramData, PodSample
from rlscale.metrics.vllm import (
    KV_CACHE_USAGE_PERC,
    METRICS,
    NUM_REQUESTS_RUNNING,
    MetricSpec,
    exposed_names,
)

_FIELDS = {
    "vllm:num_requests_running": "num_requests_running",
    "vllm:num_requests_waiting": "num_requests_waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage_perc",
    "vllm:prompt_tokens_total": "prompt_tokens_total",
    "vllm:generation_tokens_total": "generation_tokens_total",
    "vllm:num_preemptions_total": "num_preemptions_total",
    "vllm:request_success_total": "request_success_total",
    "vllm:time_to_first_token_seconds": "time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds": "inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds": "e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds": "request_queue_time_seconds",
}
"""PodSample field of each canonical vLLM metric."""


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or answered with an error."""


def spellings(spec: MetricSpec, suffix: str = "") -> list[str]:
    """Every exposed name of a metric, preferred first: current before old names, ``vllm:``
    before ``vllm_`` (counters with ``_total``; ``suffix`` such as ``_bucket`` appended)."""
    names = exposed_names(spec)
    half = len(names) // 2  # the vllm: names, then the same names with vllm_
    order = sorted(range(len(names)), key=lambda k: (k % half > 0, k >= half))
    return [names[k] + suffix for k in order]


def any_spelling(spec: MetricSpec, matcher: str, suffix: str = "") -> str:
    """``name1{matcher} or name2{matcher} or ...`` over :func:`spellings`."""
    return " or ".join(f"{name}{{{matcher}}}" for name in spellings(spec, suffix))


@dataclass(frozen=True)
class PrometheusSettings:
    """``metrics:`` with ``source: prometheus``: instant queries to ``url`` (required,
    ``http(s)://``) with ``timeout_s`` seconds per query."""

    url: str
    source: ClassVar[str] = "prometheus"
    timeout_s: float = 2.0

    @classmethod
    def parse(cls, section: Section) -> PrometheusSettings:
        """Read the section's keys (``source`` read already); refuses unknown ones."""
        url = section.string("url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{section.where('url')}: expected an http(s):// URL, got {url!r}")
        settings = cls(url.rstrip("/"), timeout_s=section.number(
            "timeout_s", cls.timeout_s, min_value=0.0, strict_min=True,
            max_value=MAX_TIMEOUT_S))
        section.finish()
        return settings

    def build(self, reader: ClusterReader, staleness_s: float) -> PrometheusSource:
        """The source; samples older than ``staleness_s`` seconds are stale."""
        return PrometheusSource(reader, self.url, timeout_s=self.timeout_s,
                                staleness_s=staleness_s)


class PrometheusSource:
    """Reads the pools' pod metrics from Prometheus' HTTP API.

    Args:
        reader: reads the pools' Deployments and pods (and weights, free GPUs).
        url: Prometheus' base URL (``http://prometheus.monitoring:9090``).
        timeout_s: per query (seconds).
        staleness_s: pod samples older than this (seconds) are stale.
        fetch: the HTTP GET (tests replace it); default :func:`~rlscale.controller.sources.
            http_get`.
        pod_label / namespace_label: the labels naming a series' pod and namespace.
    """

    def __init__(self, reader: ClusterReader, url: str, *, timeout_s: float = 5.0,
                 staleness_s: float = 90.0, fetch: Fetch | None = None,
                 pod_label: str = "pod", namespace_label: str = "namespace") -> None:
        self.reader = reader
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.staleness_s = staleness_s
        self.fetch = fetch or http_get
        self.pod_label = pod_label
        self.namespace_label = namespace_label

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------ HTTP API
    def query(self, promql: str) -> list[tuple[dict[str, str], float, float]]:
        """An instant query: ``(labels, evaluation time s, value)`` per series.

        Raises:
            PrometheusError: unreachable, an HTTP error, or ``status`` not ``success``.
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            body = self.fetch(url, self.timeout_s)
        except urllib.error.HTTPError as err:
            raise PrometheusError(f"HTTP {err.code} from {self.url}: "
                                  f"{_error_text(err)}") from err
        except Exception as err:  # refused, timed out, DNS, ...
            raise PrometheusError(f"{self.url} unreachable: {type(err).__name__}: {err}"
                                  ) from err
        try:
            answer = json.loads(body)
        except ValueError as err:
            raise PrometheusError(f"{self.url}: answer is not JSON: {err}") from err
        if not isinstance(answer, dict) or answer.get("status") != "success":
            what = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise PrometheusError(f"{self.url}: query failed: {what}")
        data = answer.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"{self.url}: expected a vector result, got "
                                  f"{data.get('resultType')!r}")
        out = []
        for series in data.get("result") or []:
            stamp, value = series["value"]
            out.append(({str(k): str(v) for k, v in series.get("metric", {}).items()},
                        float(stamp), float(value)))
        return out

    # ------------------------------------------------------------------ collection
    def collect(self, pools: Sequence[PoolConfig], now_s: float) -> CollectedMetrics:
        """Read the pools' state from the API and their pods' metrics from Prometheus."""
        state = self.reader.read(pools)
        problems = list(state.problems)
        targets: dict[str, list[PodInfo]] = defaultdict(list)
        for pool in pools:
            if pool.name in state.pools:
                targets[pool.namespace] += state.pools[pool.name].scrape_targets
        samples: list[PodSample] = []
        oldest = 0.0
        stale_pools: set[str] = set()
        for namespace, pods in targets.items():
            if not pods:
                continue
            try:
                series = self._namespace_series(namespace)
            except PrometheusError as err:
                problems += [Problem("PrometheusDown", "missing", str(err), pool=name)
                             for name in sorted({p.pool for p in pods})]
                continue
            fresh: dict[str, bool] = {}  # ready pods only
            for pod in pods:
                result = self._sample(pod, series)
                if not isinstance(result, Problem) and result[1] > self.staleness_s:
                    result = pod_problem(pod, "StaleSample", f"newest sample is "
                                         f"{result[1]:.0f} s old (more than "
                                         f"{self.staleness_s:g} s)")
                    if pod.ready:
                        stale_pools.add(pod.pool)
                if isinstance(result, Problem):
                    problems.append(result)
                    if pod.ready:
                        fresh.setdefault(pod.pool, False)
                    continue
                sample, age = result
                if pod.ready:
                    fresh[pod.pool] = True
                samples.append(sample)
                oldest = max(oldest, age)
            for name, any_fresh in fresh.items():
                if any_fresh:
                    stale_pools.discard(name)
                elif name in stale_pools:
                    problems.append(Problem("StaleMetrics", "stale",
                                            "every pod's samples in Prometheus are stale",
                                            pool=name))
        problems += [p for p in pools_without_metrics(state.pools, samples)
                     if p.pool not in stale_pools
                     and not any(q.pool == p.pool and q.kind == "PrometheusDown"
                                 for q in problems)]
        return CollectedMetrics(now_s, state.pools, tuple(samples), state.weights,
                                state.free_gpus, tuple(problems), sample_age_s=oldest)

    def _namespace_series(self, namespace: str) -> dict[str, Any]:
        """Every metric of every pod of ``namespace``: ``{canonical: {pod: value}}`` for
        gauges and counters, ``{canonical: ({pod: {le: count}}, {pod: sum})}`` for
        histograms, and ``{"timestamp": {pod: (evaluation time, sample time)}}``."""
        matcher = f'{self.namespace_label}="{namespace}"'
        by = self.pod_label
        out: dict[str, Any] = {}
        for canonical, spec in METRICS.items():
            if spec.kind == "histogram":
                buckets: dict[str, dict[float, float]] = defaultdict(dict)
                for labels, _, value in self.query(
                        f"sum by ({by}, le) ({any_spelling(spec, matcher, '_bucket')})"):
                    if by in labels and "le" in labels:
                        buckets[labels[by]][_le(labels["le"])] = value
                sums = {labels[by]: value for labels, _, value in self.query(
                    f"sum by ({by}) ({any_spelling(spec, matcher, '_sum')})") if by in labels}
                out[canonical] = (dict(buckets), sums)
            else:
                aggregate = "avg" if canonical == KV_CACHE_USAGE_PERC else "sum"
                out[canonical] = {labels[by]: value for labels, _, value in self.query(
                    f"{aggregate} by ({by}) ({any_spelling(spec, matcher)})") if by in labels}
        running = METRICS[NUM_REQUESTS_RUNNING]
        out["timestamp"] = {labels[by]: (stamp, value) for labels, stamp, value in self.query(
            f"max by ({by}) (timestamp({any_spelling(running, matcher)}))") if by in labels}
        return out

    def _sample(self, pod: PodInfo, series: dict[str, Any]
                ) -> tuple[PodSample, float] | Problem:
        """The pod's sample and its age (s), or the problem that prevents it."""
        fields: dict[str, Any] = {}
        missing = []
        try:
            for canonical, spec in METRICS.items():
                field = _FIELDS[canonical]
                if spec.kind == "histogram":
                    buckets, sums = series[canonical]
                    if pod.name not in buckets or pod.name not in sums:
                        missing.append(canonical)
                    else:
                        fields[field] = _histogram(buckets[pod.name], sums[pod.name])
                elif pod.name not in series[canonical]:
                    missing.append(canonical)
                elif canonical == KV_CACHE_USAGE_PERC:
                    fields[field] = _fraction(series[canonical][pod.name])
                else:
                    fields[field] = _count(series[canonical][pod.name])
        except ValueError as err:
            return pod_problem(pod, "ParseError", f"{canonical}: {err}")
        if missing:
            what = ("no vLLM series" if len(missing) == len(METRICS)
                    else f"no {', '.join(missing)}")
            return pod_problem(pod, "PodNotInPrometheus", f"{what} for the pod in Prometheus")
        evaluated, sampled = series["timestamp"].get(pod.name, (math.nan, math.nan))
        age = evaluated - sampled if math.isfinite(evaluated - sampled) else math.inf
        return PodSample(pod=pod.name, pool=pod.pool, ready=pod.ready, **fields), max(age, 0.0)


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def _count(value: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a non-negative count, got {value}")
    return round(value)


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:  # also NaN
        raise ValueError(f"expected a fraction in [0, 1], got {value}")
    return float(value)


def _histogram(buckets: dict[float, float], total: float) -> HistogramData:
    if math.inf not in buckets:
        raise ValueError('no le="+Inf" bucket')
    edges = sorted(buckets)
    counts = [_count(buckets[le]) for le in edges]
    if any(b < a for a, b in itertools.pairwise(counts)):
        raise ValueError(f"cumulative bucket counts decrease: {counts}")
    if not math.isfinite(total):
        raise ValueError(f"sum is {total}")
    return HistogramData(tuple(edges[:-1]), tuple(counts), float(total))


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(err.read().decode("utf-8"))
        return f"{answer.get('errorType', '')}: {answer.get('error', '')}"
    except Exception:  # not a JSON error body
        return str(err.reason)
