"""Physical bounds on what a pod's ``/metrics`` may say; a sample beyond them is not used.

A scrape can be wrong without failing: a bit flip, an exporter bug, a proxy serving another
page, a hostile pod. Before a pod's sample reaches the observation it is checked against
what its pool's profile (:class:`~rlscale.metrics.observation.PoolInfo`) makes physically
possible, with wide margins (:class:`~rlscale.controller.config.PlausibilityConfig`):

* gauges: running requests at most ``running_factor x max_num_seqs`` (vLLM runs at most
  ``max_num_seqs``), waiting requests at most ``waiting_factor x max_num_seqs``, KV-cache
  usage in [0, ``kv_max``]; every value finite and >= 0;
* counters, per series, over the interval since the previous snapshot (growth = the rise, or
  after a reset of that series its current value, as Prometheus's ``rate()`` reads it):
  requests completed (and TTFT, end-to-end and queue-time observations) at most
  ``request_factor x capacity_rps`` per second, tokens (prompt, generation, inter-token
  observations, preemptions) at most ``tokens_per_s_per_gpu x gpus_per_replica`` per second.

A sample that breaks a bound is left out, as if its scrape had failed: a ``partial`` problem
``ImplausibleMetrics`` (``degraded`` for a pod that is not ready) naming the series, its value
and the bound. The loop then decides as on any partial data (fallback, no scale-down), and the
next good sample of that pod is compared with the last one used, not with the absurd one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from rlscale.controller.config import PlausibilityConfig
from rlscale.controller.problems import Problem
from rlscale.metrics.observation_config import PoolInfo
from rlscale.metrics.snapshot import PodSample

REQUEST_SERIES = ("request_success_total", "time_to_first_token_seconds",
                  "e2e_request_latency_seconds", "request_queue_time_seconds")
"""Counters (or histogram counts) that grow by at most one per request."""
TOKEN_SERIES = ("prompt_tokens_total", "generation_tokens_total", "inter_token_latency_seconds",
                "num_preemptions_total")
"""Counters (or histogram counts) that grow by at most one per token."""


def _series(sample: PodSample, name: str) -> float:
    value = getattr(sample, name)
    return float(value if isinstance(value, (int, float)) else value.count)


def _growth(now: float, before: float) -> float:
    """A counter's rise, or after a reset (it went down) its current value."""
    return now - before if now >= before else now


def _gauge_faults(sample: PodSample, info: PoolInfo, bounds: PlausibilityConfig) -> Iterator[str]:
    limits = (("num_requests_running", bounds.running_factor * info.max_num_seqs),
              ("num_requests_waiting", bounds.waiting_factor * info.max_num_seqs),
              ("kv_cache_usage_perc", bounds.kv_max))
    for name, high in limits:
        value = float(getattr(sample, name))
        if not (math.isfinite(value) and 0.0 <= value <= high):
            yield f"{name} = {value:g} (bound [0, {high:g}])"


def _rate_faults(sample: PodSample, before: PodSample, dt_s: float, info: PoolInfo,
                 bounds: PlausibilityConfig) -> Iterator[str]:
    per_request = bounds.request_factor * info.capacity_rps
    per_token = bounds.tokens_per_s_per_gpu * info.gpus_per_replica
    for names, high in ((REQUEST_SERIES, per_request), (TOKEN_SERIES, per_token)):
        for name in names:
            now = _series(sample, name)
            if not (math.isfinite(now) and now >= 0.0):
                yield f"{name} = {now:g} (a counter is finite and >= 0)"
                continue
            rate = _growth(now, _series(before, name)) / dt_s
            if rate > high:
                yield f"{name} grows {rate:.4g}/s (bound {high:.4g}/s)"


def screen(samples: Sequence[PodSample], infos: Sequence[PoolInfo],
           previous: Mapping[str, PodSample], dt_s: float, *,
           bounds: PlausibilityConfig | None = None) -> tuple[list[PodSample], list[Problem]]:
    """The plausible ``samples`` and a problem for each one left out.

    Args:
        infos: the pools' profiles (samples of unknown pools pass unchecked).
        previous: the last sample used of each pod (the rates' base; a pod absent here is
            only checked for its gauges).
        dt_s: seconds since those samples (rates are not checked when <= 0).
        bounds: the margins (the config's ``plausibility``; default its defaults).
    """
    bounds = bounds or PlausibilityConfig()
    by_pool = {info.name: info for info in infos}
    kept: list[PodSample] = []
    problems: list[Problem] = []
    for sample in samples:
        info = by_pool.get(sample.pool)
        if info is None:
            kept.append(sample)
            continue
        faults = list(_gauge_faults(sample, info, bounds))
        before = previous.get(sample.pod)
        if before is not None and dt_s > 0:
            faults += _rate_faults(sample, before, dt_s, info, bounds)
        if not faults:
            kept.append(sample)
            continue
        problems.append(Problem("ImplausibleMetrics", "partial" if sample.ready else "degraded",
                                f"left out: {'; '.join(faults)}", pool=sample.pool,
                                pod=sample.pod))
    return kept, problems
