"""Metric sources: every pool's pod samples and Kubernetes state, and what could not be seen.

A :class:`MetricSource` returns :class:`CollectedMetrics`: the pools' state from the API
(:mod:`rlscale.controller.cluster_state`), one :class:`~rlscale.metrics.snapshot.PodSample`
per pod whose metrics were read, and a :class:`~rlscale.controller.cluster_state.Problem` for
everything missing, stale or failed. A pod whose metrics cannot be read is reported, never
counted as idle.

:class:`PodScrapeSource` (the default) reads each running pod's ``/metrics`` directly, the way
Prometheus would, and parses it with :func:`~rlscale.metrics.exposition.parse_pod_metrics`
(old, new and ``vllm_`` names). :class:`~rlscale.controller.prometheus.PrometheusSource`
asks Prometheus instead.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import math
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rlscale.controller.cluster_state import ClusterReader, PodInfo, PoolState, Problem
from rlscale.controller.config import PoolConfig
from rlscale.metrics.exposition import MetricsParseError, parse_pod_metrics
from rlscale.metrics.observation_config import PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot, PodSample, PoolStatus

MAX_PAGE_BYTES = 16 * 1024 * 1024
"""Largest ``/metrics`` page read (a vLLM page is tens of kilobytes)."""

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


def _is_timeout(err: BaseException) -> bool:
    reason = getattr(err, "reason", None)
    return isinstance(err, TimeoutError) or isinstance(reason, TimeoutError) or (
        "timed out" in str(err))


class PodScrapeSource:
    """Scrapes ``http://<podIP>:<port><path>`` of every running pod of every pool.

    Args:
        reader: reads the pools' Deployments and pods (and weights, free GPUs).
        port / path: where vLLM serves its metrics.
        timeout_s: per scrape, in total (seconds): :func:`http_get` abandons a connection
            at its deadline; the whole scrape round waits at most
            ``timeout_s × ceil(pods / max_workers) + 1``.
        max_workers: concurrent scrapes (the bound on threads and connections).
        fetch: the HTTP GET (tests replace it); default :func:`http_get`.

    Isolation: a pod whose previous scrape is still running (a fetch that ignores its
    deadline) is not scraped again — it is reported (``ScrapeTimeout``) while the others are
    read — so one slow or hostile pod costs at most one thread and only its own samples.
    """

    def __init__(self, reader: ClusterReader, *, port: int = 8000, path: str = "/metrics",
                 timeout_s: float = 2.0, max_workers: int = 16, fetch: Fetch | None = None
                 ) -> None:
        self.reader = reader
        self.port = port
        self.path = path
        self.timeout_s = timeout_s
        self.max_workers = max_workers
        self.fetch = fetch or http_get
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="rlscale-scrape")
        self._running: set[str] = set()
        """URLs whose scrape has not returned yet."""
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the scrape threads (without waiting for hung scrapes)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def url(self, pod: PodInfo) -> str:
        """The pod's metrics URL."""
        host = f"[{pod.ip}]" if pod.ip and ":" in pod.ip else pod.ip
        return f"http://{host}:{self.port}{self.path}"

    def collect(self, pools: Sequence[PoolConfig], now_s: float) -> CollectedMetrics:
        """Read the pools' state, then scrape their running pods concurrently."""
        state = self.reader.read(pools)
        problems = list(state.problems)
        targets = [pod for pool in pools if pool.name in state.pools
                   for pod in state.pools[pool.name].scrape_targets]
        with self._lock:
            busy = [pod for pod in targets if self.url(pod) in self._running]
            todo = [pod for pod in targets if self.url(pod) not in self._running]
            self._running.update(self.url(pod) for pod in todo)
        problems += [pod_problem(pod, "ScrapeTimeout", f"{self.url(pod)}: its previous scrape "
                                 f"has not returned yet") for pod in busy]
        futures = {self._executor.submit(self._scrape, pod): pod for pod in todo}
        rounds = math.ceil(len(todo) / self.max_workers) if todo else 0
        done, _ = concurrent.futures.wait(futures, timeout=self.timeout_s * rounds + 1.0)
        samples: list[PodSample] = []
        for future, pod in futures.items():
            if future not in done:
                future.cancel()
                problems.append(pod_problem(pod, "ScrapeTimeout", f"no answer from "
                                            f"{self.url(pod)} within the scrape round"))
                continue
            result = future.result()
            if isinstance(result, Problem):
                problems.append(result)
            else:
                samples.append(result)
        pools_state, problems = self._recheck_refused(pools, state.pools, problems)
        problems += pools_without_metrics(pools_state, samples)
        return CollectedMetrics(now_s, pools_state, tuple(samples), state.weights,
                                state.free_gpus, tuple(problems))

    def _recheck_refused(self, pools: Sequence[PoolConfig], states: dict[str, PoolState],
                         problems: list[Problem]
                         ) -> tuple[dict[str, PoolState], list[Problem]]:
        """Read again each pool where a ready pod refused its scrape: a scale-down can delete
        a pod between the list and the scrape (vLLM closes its server on SIGTERM). A pod
        that is then gone or terminating is no gap in the metrics (``degraded``), and the
        pool's counts are the new read's; a pod still listed ready stays ``partial``. A pool
        that cannot be read again keeps its first state."""
        refused = {(p.pool, p.pod) for p in problems
                   if p.kind == "ScrapeFailed" and p.severity == "partial"}
        if not refused:
            return states, problems
        states = dict(states)
        for pool in pools:
            if not any(name == pool.name for name, _ in refused):
                continue
            try:
                states[pool.name] = self.reader.read_pool(pool)
            except Exception:  # the first read stands; the gap stays reported
                continue
        out = []
        for problem in problems:
            if (problem.pool, problem.pod) in refused:
                still = {p.name: p for p in states[str(problem.pool)].pods}.get(str(problem.pod))
                if still is None or not still.ready:
                    gone = "deleted" if still is None else "no longer ready"
                    problem = replace(problem, severity="degraded",
                                      message=f"{problem.message} (the pod is {gone} since "
                                              f"it was listed)")
            out.append(problem)
        return states, out

    def _scrape(self, pod: PodInfo) -> PodSample | Problem:
        try:
            return self._read(pod)
        finally:
            with self._lock:
                self._running.discard(self.url(pod))

    def _read(self, pod: PodInfo) -> PodSample | Problem:
        url = self.url(pod)
        try:
            text = self.fetch(url, self.timeout_s)
        except Exception as err:  # connection refused, timeout, HTTP error status, ...
            if _is_timeout(err):
                return pod_problem(pod, "ScrapeTimeout",
                                   f"{url} did not answer within {self.timeout_s:g} s")
            return pod_problem(pod, "ScrapeFailed", f"{url}: {type(err).__name__}: {err}")
        try:
            sample = parse_pod_metrics(text, pod=pod.name, pool=pod.pool)
        except MetricsParseError as err:
            return pod_problem(pod, "ParseError", f"{url}: {err}")
        return replace(sample, ready=pod.ready)


def pod_problem(pod: PodInfo, kind: str, message: str) -> Problem:
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
