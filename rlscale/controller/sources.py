"""Metric sources: every pool's pod samples and Kubernetes state, and what could not be seen.

A :class:`MetricSource` returns :class:`CollectedMetrics`: the pools' state from the API
(:mod:`rlscale.controller.cluster_state`), one :class:`~rlscale.metrics.snapshot.PodSample`
per pod whose metrics were read, and a :class:`~rlscale.controller.problems.Problem` for
everything missing, stale or failed. A pod whose metrics cannot be read is reported, never
counted as idle.

The sources (one module each, registered in :mod:`rlscale.controller.source_registry`):
:class:`~rlscale.controller.pod_scrape.PodScrapeSource` (the default) reads each running
pod's ``/metrics`` directly, the way Prometheus would;
:class:`~rlscale.controller.prometheus.PrometheusSource` asks Prometheus instead. This module
holds what they share: the protocol, :class:`CollectedMetrics`, the HTTP GET and the way a
pod without metrics is reported.
"""

from __future__ import annotations

import http.client
import io
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from rlscale.agents.reasons import ProblemKind
from rlscale.controller.cluster_state import ClusterReader, PodInfo, PoolState
from rlscale.controller.problems import Problem
from rlscale.controller.resources import PoolConfig
from rlscale.metrics.observation_config import PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot, PodSample, PoolStatus

MAX_PAGE_BYTES = 16 * 1024 * 1024
"""Largest ``/metrics`` page read (a vLLM page is tens of kilobytes)."""
MAX_TIMEOUT_S = 300.0
"""Longest per-scrape or per-query timeout a config may ask for (seconds)."""

Fetch = Callable[[str, float], str]
"""``fetch(url, timeout_s) -> body``: an HTTP GET (raises on failure)."""


@dataclass(frozen=True)
class CollectedMetrics:
    """One collection.

    Attributes:
        time_s: when it was taken (Unix seconds).
        pools: state of the pools whose Deployment could be read.
        samples: pod metrics read (terminating pods included, ``ready`` False).
        weights: routing weight per pool from the HTTPRoute (None: no route or unreadable).
        free_gpus: free GPUs per type (None: unknown).
        problems: what is missing, partial, stale or degraded, and why.
        sample_age_s: age of the oldest sample used, seconds (0 for a direct scrape).
    """

    time_s: float
    pools: dict[str, PoolState]
    samples: tuple[PodSample, ...]
    weights: dict[str, float] | None
    free_gpus: dict[str, int] | None
    problems: tuple[Problem, ...]
    sample_age_s: float = 0.0

    def with_severity(self, *severities: str) -> tuple[Problem, ...]:
        """The problems of the given severities."""
        return tuple(p for p in self.problems if p.severity in severities)

    def statuses(self, infos: Sequence[PoolInfo]) -> tuple[PoolStatus, ...]:
        """Each pool's :class:`PoolStatus` (in ``infos`` order; all pools must be present)."""
        out = []
        for info in infos:
            state = self.pools[info.name]
            weight = 1.0 if self.weights is None else self.weights.get(info.name, 0.0)
            out.append(PoolStatus(info.name, state.desired, state.ready, state.starting,
                                  state.pending, state.draining, weight, info.gpu_type,
                                  info.gpus_per_replica))
        return tuple(out)

    def snapshot(self, infos: Sequence[PoolInfo], free_gpus: dict[str, int],
                 samples: Sequence[PodSample] | None = None) -> ClusterSnapshot:
        """The :class:`ClusterSnapshot` the observation builder reads."""
        return ClusterSnapshot(self.time_s, self.statuses(infos),
                               tuple(self.samples if samples is None else samples), free_gpus)


class MetricSource(Protocol):
    """Where the controller's metrics come from."""

    def collect(self, pools: Sequence[PoolConfig], now_s: float) -> CollectedMetrics:
        """Read every pool now (``now_s``: Unix seconds); never raises for missing data."""

    def close(self) -> None:
        """Release threads and connections."""


class SourceSettings(Protocol):
    """A metric source's part of the controller config (the ``metrics:`` section): each kind
    of source is one module with its settings, parsed from that section, and one entry in
    :data:`rlscale.controller.source_registry.SOURCES`."""

    source: ClassVar[str]
    """The ``metrics.source`` value naming the kind."""

    def build(self, reader: ClusterReader, staleness_s: float) -> MetricSource:
        """The source, reading the cluster through ``reader``; samples older than
        ``staleness_s`` seconds are stale."""


CHUNK_BYTES = 64 * 1024
"""Bytes read per ``recv`` while a page is read against its deadline."""


def http_get(url: str, timeout_s: float) -> str:
    """GET ``url`` (no proxy: pod IPs and in-cluster Services are reached directly) within
    ``timeout_s`` seconds **in total**: connecting, the headers and every byte of the body. A
    server that drips its answer a byte at a time is abandoned (the connection closed) at the
    deadline, so one slow pod holds a scrape thread at most ``timeout_s``.

    Raises:
        TimeoutError: the deadline passed; urllib.error.HTTPError: an error status (its body
        readable); ValueError: not http(s), a page over :data:`MAX_PAGE_BYTES`; OSError: the
        connection failed.
    """
    deadline = time.monotonic() + timeout_s
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s):// URL, got {url!r}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        body = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out: the page was not complete within {timeout_s:g} s "
                                   f"({len(body)} bytes read)")
            if connection.sock is not None:
                connection.sock.settimeout(left)
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                break
            body += chunk
            if len(body) > MAX_PAGE_BYTES:
                raise ValueError(f"response larger than {MAX_PAGE_BYTES} bytes")
    finally:
        connection.close()
    if response.status != 200:
        raise urllib.error.HTTPError(url, response.status, response.reason, response.headers,
                                     io.BytesIO(bytes(body)))
    return body.decode("utf-8")


def pod_problem(pod: PodInfo, kind: ProblemKind, message: str) -> Problem:
    """A pod whose metrics are missing: ``partial`` data for a ready pod, only ``degraded``
    for a pod that is not ready — terminating (it gets no new requests and may already have
    closed its server) or still starting (out of the Service's endpoints, so it has no
    traffic to hide; vLLM serves ``/metrics`` only once its model is loaded)."""
    return Problem(kind, "partial" if pod.ready else "degraded", message, pool=pod.pool,
                   pod=pod.name)


def pools_without_metrics(pools: dict[str, PoolState],
                          samples: Sequence[PodSample]) -> list[Problem]:
    """A ``missing`` problem for each pool with running, ready pods none of which gave
    metrics."""
    sampled = {s.pod for s in samples}
    out = []
    for name, state in pools.items():
        live = [p.name for p in state.scrape_targets if p.ready]
        if live and not sampled.intersection(live):
            out.append(Problem("NoPodMetrics", "missing",
                               f"none of its {len(live)} ready pod(s) gave metrics",
                               pool=name))
    return out
