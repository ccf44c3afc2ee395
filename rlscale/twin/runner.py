"""The twin: the simulator in real time (or N times faster) behind a Kubernetes API and vLLM
pod endpoints.

:meth:`Twin.run` loops every ``tick_s`` wall seconds: apply what the API asks (replicas,
weights) to the simulator; advance the simulator to ``elapsed wall time × speed`` (at most
``MAX_CATCH_UP`` ticks' worth per tick, so the servers stay responsive when it lags); publish
pods and Deployment status to the API; update the pods' ``/metrics`` servers and the
Prometheus target file; print a status line every ``status_every_s``.

Besides the Kubernetes API, the API port serves the twin's own endpoints:

* ``GET /twin/status[?since=UNIX_S]`` — JSON: simulated time, lag, pools, requests and SLO
  attainment so far, pod endpoints, the history of replicas and weights the API asked for,
  the API writes (the last 1,000, or all kept since ``since``), pending faults;
* ``POST /twin/faults`` — inject faults (JSON): ``{"api": {"target": "deployments/scale",
  "status": 409, "count": 3, "reads": false}}`` (see :class:`~rlscale.twin.faults.ApiFaults`),
  ``{"hang": {"target": "<pod, pool or *>", "seconds": 5}}`` (``/metrics`` answers late; 0
  clears), ``{"clear": true}`` (both kinds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp.web
import numpy as np

from rlscale.logformat import JsonFormatter, LogFormat, resolve_format
from rlscale.metrics.exposition import Spelling
from rlscale.sim.cluster import Cluster
from rlscale.sim.export import cluster_snapshot
from rlscale.sim.pool_info import pool_infos
from rlscale.sim.scenario import DEFAULT_SCENARIO, Scenario
from rlscale.twin.attach import AttachedMirror, AttachError, KubeCalls, load_api
from rlscale.twin.files import (
    controller_config,
    render_controller_config,
    write_file_sd,
    write_kubeconfig,
    write_text,
)
from rlscale.twin.kubeapi import Kube
from rlscale.twin.mirror import Mirror
from rlscale.twin.pod_metrics import IpPool, PodMetricsServer, free_port
from rlscale.twin.status import SloTally, clock, pool_counts, status_line

MAX_CATCH_UP = 5
"""Ticks' worth of simulated time one tick may advance at most."""


class TwinError(RuntimeError):
    """The twin cannot start (a port in use, a bad option); the message says what to do."""


@dataclass(frozen=True)
class TwinOptions:
    """How to run the twin.

    Attributes:
        scenario: built-in scenario name or YAML path.
        speed: simulated seconds per wall second (> 0).
        host: the address the API listens on; port: its port (0: any free one).
        metrics_port: the port every pod's ``/metrics`` listens on (0: a free one).
        namespace / route: where the pools live and the HTTPRoute's name.
        kubeconfig_out / controller_config_out / prometheus_sd: files to write (None: not).
        seed: the simulator's seed (default the scenario's).
        duration_s: simulated seconds to run (default: the workload's duration).
        tick_s: wall seconds between simulator advances.
        status_every_s: wall seconds between status lines (0: none).
        spelling: metric names the pods serve.
        log_format: the printed lines as they are (``text``), as JSON objects (``json``), or
            ``auto``: text when the output is a terminal, else JSON.
        kubeconfig: attach to this kubeconfig's API server as a virtual GPU node pool
            (:mod:`rlscale.twin.attach`) instead of serving an API of its own (None).
    """

    scenario: str = DEFAULT_SCENARIO
    speed: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    namespace: str = "llm"
    route: str = "vllm"
    kubeconfig_out: str | None = "twin.kubeconfig"
    controller_config_out: str | None = "twin-controller.yaml"
    prometheus_sd: str | None = None
    seed: int | None = None
    duration_s: float | None = None
    tick_s: float = 0.2
    status_every_s: float = 5.0
    spelling: Spelling = "new"
    log_format: LogFormat = "auto"
    kubeconfig: str | None = None

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise TwinError(f"--speed must be > 0, got {self.speed}")
        if not self.tick_s > 0:
            raise TwinError(f"--tick must be > 0 s, got {self.tick_s}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise TwinError(f"--duration must be > 0 s, got {self.duration_s}")
        for name in ("port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise TwinError(f"--{name.replace('_', '-')} must be in 0-65535")


class Twin:
    """A simulated cluster served as a Kubernetes API and vLLM pods (module docstring).

    Args:
        options: how to run; scenario: the loaded scenario; out: where to print.
    """

    def __init__(self, options: TwinOptions, scenario: Scenario,
                 out: TextIO = sys.stdout) -> None:
        self.options = options
        self.scenario = scenario
        self.out = out
        self._json_lines = resolve_format(options.log_format, out) == "json"
        seed = scenario.seed if options.seed is None else options.seed
        self.seed = seed
        rng = np.random.default_rng(seed)
        overrides = ({"duration_s": options.duration_s} if options.duration_s is not None
                     and "generator" in scenario.workload else None)
        self.workload = scenario.build_workload(rng, overrides)
        configured = scenario.workload.get("duration_s")
        self.duration_s = (options.duration_s if options.duration_s is not None else float(
            configured if isinstance(configured, (int, float)) else
            max(self.workload.duration_s, 1.0)))
        self.cluster = Cluster(scenario.cluster, self.workload, rng)
        self.pool_infos = pool_infos(scenario, self.workload)
        """The pools as the observation knows them (capacities at this workload's lengths)."""
        self.capacity_rps = {p.name: p.capacity_rps for p in self.pool_infos}
        self.model_names = {p.name: p.profile.model for p in scenario.cluster.pools}
        self.kube = Kube()
        self.metrics_port = options.metrics_port or free_port()
        self.pod_metrics = PodMetricsServer(self.metrics_port, self.model_names,
                                            spelling=options.spelling)
        self.mirror: Mirror | AttachedMirror
        if options.kubeconfig:
            self.mirror = AttachedMirror(
                KubeCalls(load_api(options.kubeconfig)), self.cluster,
                namespace=options.namespace, route=options.route, port=self.metrics_port,
                model_names=self.model_names, ips=IpPool())
        else:
            self.mirror = Mirror(self.kube, self.cluster, namespace=options.namespace,
                                 route=options.route, port=self.metrics_port,
                                 model_names=self.model_names, ips=IpPool())
        self.tally = SloTally(scenario.slo)
        self.url = ""
        self.lag_s = 0.0
        self._runner: aiohttp.web.ServerRunner | None = None
        self._started = 0.0
        self._targets: list[tuple[str, str, str]] | None = None
        self._last_status = (0.0, 0)  # simulated s, arrivals at the last status line

    # ------------------------------------------------------------------ lifetime
    async def start(self) -> None:
        """Seed the API, listen, write the files, print what is served.

        Raises:
            TwinError: the API port cannot be bound.
        """
        options = self.options
        await self.kube.__aenter__()
        await self.pod_metrics.start()
        await self.mirror.seed()
        self._runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self._handle),
                                                handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, options.host, options.port)
        try:
            await site.start()
        except OSError as err:
            await self.close()
            raise TwinError(f"cannot listen on {options.host}:{options.port}: {err.strerror} "
                            f"(choose another --port, or 0 for any free port)") from None
        port = self._runner.addresses[0][1]
        self.url = f"http://{options.host}:{port}"
        await self._sync_pods()
        self._write_files()
        self._banner()
        self._started = time.monotonic()
        self._last_status = (self.cluster.now_s, self.cluster.arrived)

    async def close(self) -> None:
        """Stop serving (API and pods)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.pod_metrics.close()
        if self.kube.active:
            await self.kube.__aexit__(None, None, None)

    async def run(self, stop: asyncio.Event) -> dict[str, Any]:
        """Advance until ``stop`` is set or ``duration_s`` simulated seconds have passed;
        returns the final status."""
        options = self.options
        next_status = time.monotonic() + options.status_every_s
        ticks = 0
        while not stop.is_set() and self.cluster.now_s < self.duration_s:
            await self.tick()
            ticks += 1
            if ticks % 100 == 0:
                self.kube.forget_requests()
            now = time.monotonic()
            if options.status_every_s > 0 and now >= next_status:
                self._print(self._status_line())
                next_status = now + options.status_every_s
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), options.tick_s)
        self._print(self._status_line())
        why = "stopped" if stop.is_set() else "reached the end of its run"
        self._print(f"rlscale twin: {why} at simulated {clock(self.cluster.now_s)}")
        return self.status()

    async def tick(self) -> None:
        """One step: API -> simulator, advance, simulator -> API and pods. An attached twin
        whose API server fails a call says so and tries again at the next tick."""
        try:
            await self._tick()
        except AttachError as err:
            self._print(f"[{clock(self.cluster.now_s)}] API error (retrying): {err}")

    async def _tick(self) -> None:
        options = self.options
        for change in self.mirror.apply_api():
            self._print(f"[{clock(self.cluster.now_s)}] {change}")
        target = min((time.monotonic() - self._started) * options.speed, self.duration_s)
        limit = self.cluster.now_s + options.tick_s * options.speed * MAX_CATCH_UP
        self.cluster.run_until(max(self.cluster.now_s, min(target, limit)))
        self.lag_s = max(0.0, target - self.cluster.now_s)
        await self._sync_pods()
        self.tally.update(self.cluster)

    async def _sync_pods(self) -> None:
        """Pods that became ready listen before the API shows them Ready; pods that are gone
        stop listening after the API dropped them (a reader of the API never finds a Ready
        pod that refuses connections)."""
        serving = self.mirror.serving_pods()
        await self._serve(serving)
        await self.mirror.publish()
        serving = self.mirror.serving_pods()
        await self._serve(serving)
        for pod in sorted(self.pod_metrics.serving() - set(serving)):
            await self.pod_metrics.stop_serving(pod)
            if self._targets is not None:
                self._print(f"[{clock(self.cluster.now_s)}] pod {pod} stopped serving")
        snapshot = cluster_snapshot(self.cluster)
        self.pod_metrics.samples = {self.mirror.api_name(s.pod): s for s in snapshot.pods}
        targets = self.pod_metrics.targets
        if targets != self._targets:
            self._targets = targets
            if self.options.prometheus_sd:
                write_file_sd(self.options.prometheus_sd, targets, self.options.namespace)

    async def _serve(self, serving: dict[str, tuple[str, str]]) -> None:
        for pod, (pool, ip) in sorted(serving.items()):
            if pod not in self.pod_metrics.serving():
                await self.pod_metrics.serve(pod, pool, ip)
                if self._targets is not None:
                    self._print(f"[{clock(self.cluster.now_s)}] pod {pod} serves "
                                f"http://{ip}:{self.metrics_port}/metrics")

    # ------------------------------------------------------------------ reporting
    def _print(self, line: str) -> None:
        if self._json_lines:
            line = JsonFormatter().format(logging.makeLogRecord(
                {"name": "rlscale.twin", "levelname": "INFO", "levelno": logging.INFO,
                 "msg": line}))
        print(line, file=self.out, flush=True)

    @property
    def kubeconfig(self) -> str | None:
        """The kubeconfig a controller uses: the one attached to, else the one written."""
        return self.options.kubeconfig or self.options.kubeconfig_out

    def _write_files(self) -> None:
        options = self.options
        mirror = self.mirror
        if options.kubeconfig_out and not options.kubeconfig:
            write_kubeconfig(options.kubeconfig_out, self.url, options.namespace)
        if options.controller_config_out:
            attached = mirror if isinstance(mirror, AttachedMirror) else None
            config = controller_config(
                self.scenario, speed=options.speed, namespace=options.namespace,
                route=options.route, metrics_port=self.metrics_port, pools=self.pool_infos,
                deployments=attached.deployments if attached else None,
                backends=attached.backends if attached else None)
            write_text(options.controller_config_out, render_controller_config(
                config, scenario=self.scenario.name, speed=options.speed))

    def _banner(self) -> None:
        o = self.options
        pools = ", ".join(f"{p.name} ({p.profile.name}, {self.cluster.desired[i]} replicas)"
                          for i, p in enumerate(self.scenario.cluster.pools))
        lines = [
            f"rlscale twin: scenario {self.scenario.name}, speed x{o.speed:g}, seed {self.seed}, "
            f"{self.duration_s:g} simulated s ({self.duration_s / o.speed:.0f} wall s)",
            f"  pools              {pools}",
            f"  Kubernetes API     {self._api_url()}  (namespace {o.namespace}, HTTPRoute "
            f"{o.route})",
            f"  twin status        {self.url}/twin/status",
        ]
        if self.kubeconfig:
            lines.append(f"  kubeconfig         {self.kubeconfig}  (kubectl --kubeconfig "
                         f"{self.kubeconfig} get deploy,pods -n {o.namespace})")
        if o.controller_config_out:
            lines.append(f"  controller config  {o.controller_config_out}  (rlscale controller "
                         f"--config {o.controller_config_out}"
                         f"{' --kubeconfig ' + self.kubeconfig if self.kubeconfig else ''})")
        if o.prometheus_sd:
            lines.append(f"  Prometheus file_sd {o.prometheus_sd}")
        lines.append(f"  pod /metrics       port {self.metrics_port} on each pod's address:")
        lines += [f"    {pod:<28} {url}" for pod, url in sorted(
            self.pod_metrics.endpoints.items())]
        for line in lines:
            self._print(line)

    def _api_url(self) -> str:
        if isinstance(self.mirror, AttachedMirror):
            return f"{self.mirror.server} (attached: virtual GPU nodes and kubelets)"
        return self.url

    def _status_line(self) -> str:
        sim0, arrived0 = self._last_status
        span = self.cluster.now_s - sim0
        rate = (self.cluster.arrived - arrived0) / span if span > 0 else 0.0
        self._last_status = (self.cluster.now_s, self.cluster.arrived)
        return status_line(self.cluster, speed=self.options.speed, weights=self.mirror.weights,
                           arrival_rps=rate, tally=self.tally, lag_s=self.lag_s)

    def status(self, since_s: float | None = None) -> dict[str, Any]:
        """Everything ``GET /twin/status`` answers (see the module docstring); writes since
        ``since_s`` (Unix seconds) if given, else the last 1,000."""
        writes = list(self.kube.writes)
        writes = (writes[-1000:] if since_s is None else
                  [w for w in writes if w.time_s >= since_s])
        counts = pool_counts(self.cluster)
        weights = self.mirror.weights
        for name, entry in counts.items():
            entry["weight"] = weights.get(name, 0.0)  # type: ignore[assignment]
        return {
            "scenario": self.scenario.name, "speed": self.options.speed,
            "time_s": time.time(), "sim_time_s": self.cluster.now_s,
            "duration_s": self.duration_s, "lag_s": self.lag_s,
            "api": self.url, "namespace": self.options.namespace,
            "route": self.options.route, "metrics_port": self.metrics_port,
            "pools": counts,
            "requests": {"arrived": self.cluster.arrived, "ended": self.tally.ended,
                         "failed": self.tally.failed, "met_slo": self.tally.met,
                         "slo_attainment": self.tally.attainment},
            "pods": dict(self.mirror.pod_ips), "endpoints": self.pod_metrics.endpoints,
            "history": self.mirror.history.to_dict(),
            "writes": [w.to_dict() for w in writes],
            "faults": {"api": self.kube.faults.pending(),
                       "hang_s": dict(self.pod_metrics.hangs_s)},
            "capacity_rps": self.capacity_rps,
        }

    # ------------------------------------------------------------------ HTTP
    async def _handle(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if request.path.startswith("/twin/"):
            return await self._control(request)
        if isinstance(self.mirror, AttachedMirror):
            return aiohttp.web.json_response(
                {"error": f"attached to {self.mirror.server}: ask that API server"},
                status=404)
        response: aiohttp.web.StreamResponse = await self.kube(request)
        return response

    async def _control(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.Response:
        if request.path == "/twin/status" and request.method == "GET":
            try:
                since = request.query.get("since")
                return aiohttp.web.json_response(self.status(
                    float(since) if since is not None else None))
            except ValueError as err:
                return aiohttp.web.json_response({"error": str(err)}, status=400)
        if request.path == "/twin/faults" and request.method == "POST":
            try:
                body = json.loads(await request.text() or "{}")
                self.apply_faults(body)
            except (ValueError, TypeError, KeyError) as err:
                return aiohttp.web.json_response({"error": str(err)}, status=400)
            return aiohttp.web.json_response(self.status()["faults"])
        return aiohttp.web.json_response(
            {"error": f"unknown twin endpoint {request.method} {request.path}; use GET "
                      f"/twin/status or POST /twin/faults"}, status=404)

    def apply_faults(self, body: Any) -> None:
        """Apply a ``/twin/faults`` request (see the module docstring).

        Raises:
            ValueError / TypeError / KeyError: a malformed request.
        """
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        unknown = sorted(set(body) - {"api", "hang", "clear"})
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; use api, hang or clear")
        if body.get("clear"):
            self.kube.faults.clear()
            self.pod_metrics.hangs_s.clear()
        if "api" in body:
            if isinstance(self.mirror, AttachedMirror):
                raise ValueError("API faults need the twin's own API (not --kubeconfig)")
            api = body["api"]
            self.kube.faults.add(str(api["target"]), int(api["status"]),
                                 int(api.get("count", 1)), reads=bool(api.get("reads", False)))
        if "hang" in body:
            hang = body["hang"]
            self.pod_metrics.hang(str(hang["target"]), float(hang["seconds"]))
