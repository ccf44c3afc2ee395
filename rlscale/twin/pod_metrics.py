"""Each simulated pod's vLLM ``/metrics`` and ``/health``, on its own loopback address.

Linux routes all of ``127.0.0.0/8`` to the loopback interface, so every pod gets an address of
its own (``127.0.1.1``, ``127.0.1.2``, ...; :class:`IpPool`) and all pods listen on the same
port, as vLLM pods do on their pod IPs. One aiohttp runner holds one ``TCPSite`` per serving
pod: added when the pod becomes ready (vLLM opens its server once the model is loaded), removed
when it is gone. The page is :func:`rlscale.metrics.exposition.render_pod_metrics` of the pod's
latest :class:`~rlscale.metrics.snapshot.PodSample` — the exposition the simulator's
environment reads too.

Faults: :meth:`PodMetricsServer.hang` makes a pod's (a pool's, or every pod's) ``/metrics``
answer only after a delay, as a wedged process would.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp.web

from rlscale.metrics.exposition import Spelling, render_pod_metrics
from rlscale.metrics.snapshot import PodSample

log = logging.getLogger("rlscale.twin")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format, as vLLM (prometheus-client) serves it."""


class IpPool:
    """Loopback addresses for pods, ``127.0.<a>.<b>`` with ``a`` in 1-254 and ``b`` in 1-254,
    handed out in order; an address comes back only after all others were used (so a new pod
    does not inherit a gone pod's address while Prometheus still remembers it)."""

    def __init__(self) -> None:
        self._next = 0
        self._held: set[str] = set()

    @staticmethod
    def _address(index: int) -> str:
        return f"127.0.{1 + index // 254}.{1 + index % 254}"

    def take(self) -> str:
        """A free address.

        Raises:
            RuntimeError: every one of the 64,516 addresses is held.
        """
        for _ in range(254 * 254):
            ip = self._address(self._next)
            self._next = (self._next + 1) % (254 * 254)
            if ip not in self._held:
                self._held.add(ip)
                return ip
        raise RuntimeError("no free loopback address left for a pod")

    def release(self, ip: str) -> None:
        """Give an address back."""
        self._held.discard(ip)


def free_port(host: str = "0.0.0.0") -> int:
    """A TCP port no one listens on now (bound on ``host`` and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class _Served:
    pod: str
    pool: str
    ip: str
    site: aiohttp.web.TCPSite | None


class PodMetricsServer:
    """Serves ``/metrics`` and ``/health`` of every serving pod on ``<pod ip>:<port>``.

    Args:
        port: the port every pod listens on (the controller config's ``metrics.port``).
        model_names: vLLM's ``model_name`` label per pool.
        spelling: metric names to serve (``new``, ``old`` or ``underscore``: see
            :data:`rlscale.metrics.exposition.Spelling`).
    """

    def __init__(self, port: int, model_names: Mapping[str, str], *,
                 spelling: Spelling = "new") -> None:
        self.port = port
        self.model_names = dict(model_names)
        self.spelling = spelling
        self.samples: dict[str, PodSample] = {}
        self.hangs_s: dict[str, float] = {}
        """Delay (s) before answering ``/metrics``, by pod name, pool name or ``*``."""
        self._served: dict[str, _Served] = {}
        self._by_ip: dict[str, str] = {}
        app = aiohttp.web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, handle_signals=False,
                                             shutdown_timeout=0.5)
        self._bind_errors = 0

    async def start(self) -> None:
        """Prepare the runner (no pod serves yet)."""
        await self._runner.setup()

    async def close(self) -> None:
        """Stop every pod's server."""
        await self._runner.cleanup()
        self._served.clear()
        self._by_ip.clear()

    @property
    def endpoints(self) -> dict[str, str]:
        """``pod -> http://ip:port/metrics`` of the pods serving now."""
        return {name: f"http://{s.ip}:{self.port}/metrics" for name, s in self._served.items()
                if s.site is not None}

    @property
    def targets(self) -> list[tuple[str, str, str]]:
        """``(pod, pool, ip:port)`` of the pods serving now."""
        return [(s.pod, s.pool, f"{s.ip}:{self.port}") for s in self._served.values()
                if s.site is not None]

    async def serve(self, pod: str, pool: str, ip: str) -> bool:
        """Start serving ``pod`` on ``ip``; False (logged) if the address cannot be bound."""
        if pod in self._served:
            return self._served[pod].site is not None
        site: aiohttp.web.TCPSite | None = aiohttp.web.TCPSite(self._runner, ip, self.port)
        try:
            assert site is not None
            await site.start()
        except OSError as err:
            self._bind_errors += 1
            if self._bind_errors <= 5:
                log.warning("pod %s: cannot listen on %s:%d: %s", pod, ip, self.port, err)
            site = None
        self._served[pod] = _Served(pod, pool, ip, site)
        self._by_ip[ip] = pod
        return site is not None

    async def stop_serving(self, pod: str) -> None:
        """Stop serving ``pod`` (its address then refuses connections)."""
        served = self._served.pop(pod, None)
        if served is None:
            return
        self._by_ip.pop(served.ip, None)
        self.samples.pop(pod, None)
        if served.site is not None:
            await served.site.stop()

    def serving(self) -> set[str]:
        """The pods being served."""
        return set(self._served)

    def hang(self, target: str, seconds: float) -> None:
        """Delay ``/metrics`` of ``target`` (a pod, a pool or ``*``) by ``seconds``; 0
        clears it."""
        if seconds <= 0:
            self.hangs_s.pop(target, None)
        else:
            self.hangs_s[target] = seconds

    def _pod_of(self, request: aiohttp.web.Request) -> _Served | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        pod = self._by_ip.get(sockname[0]) if sockname else None
        return self._served.get(pod) if pod else None

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        served = self._pod_of(request)
        if served is None:
            return aiohttp.web.Response(status=503, text="pod is gone\n")
        delay = (self.hangs_s.get(served.pod) or self.hangs_s.get(served.pool)
                 or self.hangs_s.get("*"))
        if delay:
            await asyncio.sleep(delay)
        sample = self.samples.get(served.pod)
        if sample is None:
            return aiohttp.web.Response(status=503, text="engine not running\n")
        text = render_pod_metrics(sample, model_name=self.model_names.get(served.pool, "model"),
                                  spelling=self.spelling)
        return aiohttp.web.Response(body=text.encode("utf-8"),
                                    headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        served = self._pod_of(request)
        return aiohttp.web.Response(status=200 if served else 503,
                                    text="ok\n" if served else "pod is gone\n")
