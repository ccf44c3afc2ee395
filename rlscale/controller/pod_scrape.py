"""The default metric source: every running pod's ``/metrics``, read directly.

:class:`PodScrapeSource` scrapes ``http://<podIP>:<port><path>`` of each running pod of each
pool, the way Prometheus would, concurrently and each against its own deadline, and parses the
page with :func:`~rlscale.metrics.exposition.parse_pod_metrics` (old, new and ``vllm_``
names). Its part of the controller config is :class:`PodScrapeSettings` (``metrics.source:
pods``).
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from rlscale.configschema import ConfigError, Section
from rlscale.controller.cluster_state import ClusterReader, PodInfo, PoolState
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
from rlscale.metrics.exposition import MetricsParseError, parse_pod_metrics
from rlscale.metrics.snapshot import PodSample

MAX_WORKERS = 256
"""Most concurrent scrapes a config may ask for."""


@dataclass(frozen=True)
class PodScrapeSettings:
    """``metrics:`` with ``source: pods``: scrape ``http://<podIP>:<port><path>`` of every
    running pod with ``max_workers`` threads, ``timeout_s`` seconds per scrape in total."""

    source: ClassVar[str] = "pods"
    port: int = 8000
    path: str = "/metrics"
    timeout_s: float = 2.0
    max_workers: int = 16

    @classmethod
    def parse(cls, section: Section) -> PodScrapeSettings:
        """Read the section's keys (``source`` read already); refuses unknown ones."""
        settings = cls(
            port=section.integer("port", cls.port, min_value=1, max_value=65535),
            path=section.string("path", cls.path),
            timeout_s=section.number("timeout_s", cls.timeout_s, min_value=0.0,
                                     strict_min=True, max_value=MAX_TIMEOUT_S),
            max_workers=section.integer("max_workers", cls.max_workers, min_value=1,
                                        max_value=MAX_WORKERS))
        if not settings.path.startswith("/"):
            raise ConfigError(f"{section.where('path')}: must start with '/', got "
                              f"{settings.path!r}")
        section.finish()
        return settings

    def build(self, reader: ClusterReader, staleness_s: float) -> PodScrapeSource:
        """The source (a direct scrape is never stale: ``staleness_s`` is not used)."""
        return PodScrapeSource(reader, port=self.port, path=self.path,
                               timeout_s=self.timeout_s, max_workers=self.max_workers)


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
