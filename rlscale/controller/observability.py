"""What the controller tells about itself: Prometheus metrics, health endpoints, JSON logs and
Kubernetes Events.

Metrics (prometheus-client, on a private ``CollectorRegistry``):

==========================================  =========  ======================================
name                                        type       meaning
==========================================  =========  ======================================
``rlscale_decisions_total{pool,reason}``    counter    decisions per pool, by reason
``rlscale_desired_replicas{pool}``          gauge      replicas decided (replicas)
``rlscale_routing_weight{pool}``            gauge      routing share decided (fraction 0-1)
``rlscale_fallbacks_total{reason}``         counter    decisions not taken by the primary
                                                       policy (StaleMetrics, PartialMetrics,
                                                       FallbackOutOfRange, PolicyError, ...)
``rlscale_shield_interventions_total{rule}``  counter  shield rules that changed a decision
``rlscale_loop_duration_seconds``           histogram  one control iteration (s)
``rlscale_metrics_staleness_seconds``       gauge      age of the metrics decided on (s;
                                                       -1 before any usable metrics)
``rlscale_is_leader``                       gauge      1 while this replica holds the Lease
``rlscale_actuation_errors_total{kind}``    counter    failed writes (temporary, permanent,
                                                       fenced: not sent without the Lease)
``rlscale_outside_writes_total{target}``    counter    writes by others to what this
                                                       controller wrote (replicas, weights)
==========================================  =========  ======================================

:class:`HealthServer` serves ``/metrics``, ``/healthz`` (the process is alive) and
``/readyz`` (the config is loaded and a control iteration finished recently) from a daemon
thread (stdlib ``http.server``). :mod:`rlscale.logformat` formats the log lines;
:class:`EventRecorder` creates ``v1`` Events (``ScaledUp``, ``ScaledDown``,
``WeightsChanged``) on the objects changed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

from rlscale.controller.kube import describe

log = logging.getLogger("rlscale.controller")

LOOP_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Buckets of ``rlscale_loop_duration_seconds`` (seconds)."""


class ControllerMetrics:
    """The controller's own metrics on a private registry (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter("rlscale_decisions", "Decisions per pool, by reason",
                                 ["pool", "reason"], registry=r)
        self.desired_replicas = Gauge("rlscale_desired_replicas",
                                      "Replicas decided per pool", ["pool"], registry=r)
        self.routing_weight = Gauge("rlscale_routing_weight",
                                    "Routing share decided per pool (0-1)", ["pool"],
                                    registry=r)
        self.fallbacks = Counter("rlscale_fallbacks",
                                 "Decisions not taken by the primary policy, by reason",
                                 ["reason"], registry=r)
        self.interventions = Counter("rlscale_shield_interventions",
                                     "Shield rules that changed a decision", ["rule"],
                                     registry=r)
        self.loop_duration = Histogram("rlscale_loop_duration_seconds",
                                       "Duration of one control iteration (s)",
                                       buckets=LOOP_BUCKETS_S, registry=r)
        self.staleness = Gauge("rlscale_metrics_staleness_seconds",
                               "Age of the metrics the last decision used (s)", registry=r)
        self.is_leader = Gauge("rlscale_is_leader", "1 while this replica holds the Lease",
                               registry=r)
        self.actuation_errors = Counter("rlscale_actuation_errors",
                                        "Failed writes to the cluster, by kind", ["kind"],
                                        registry=r)
        self.outside_writes = Counter("rlscale_outside_writes",
                                      "Writes by others to what this controller wrote",
                                      ["target"], registry=r)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        text: bytes = _generate_latest(self.registry)
        return text

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value (e.g. ``value("rlscale_decisions_total", pool="a",
        reason="Stable")``), or None if absent."""
        result: float | None = self.registry.get_sample_value(name, labels)
        return result


# ---------------------------------------------------------------------------------- HTTP
class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``address:port`` (port 0: any free one;
    :attr:`port` tells which)."""

    def __init__(self, metrics: ControllerMetrics, ready: Callable[[], tuple[bool, str]], *,
                 address: str = "0.0.0.0", port: int = 8080) -> None:
        handler = _handler(metrics, ready)
        self._server = ThreadingHTTPServer((address, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name="rlscale-http",
                                        daemon=True)

    def start(self) -> HealthServer:
        """Serve from a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def _handler(metrics: ControllerMetrics,
             ready: Callable[[], tuple[bool, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok, why = ready()
                self._send(200 if ok else 503, (why or "ok").encode() + b"\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes,
                  content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds would flood the log: stay quiet."""

    return Handler


# ---------------------------------------------------------------------------------- events
class EventRecorder:
    """Creates Kubernetes Events (``CoreV1Api.create_namespaced_event``); a failure to record
    is logged, never raised (an Event is a courtesy, the decision already happened). Events
    are named ``<object>.<hex nanoseconds>`` as client-go's recorder names them.

    Args:
        core: ``CoreV1Api``; component: ``source.component`` / ``reportingComponent``;
        instance: ``reportingInstance`` (the pod name); now: the clock (seconds).
    """

    def __init__(self, core: Any, *, component: str = "rlscale-controller",
                 instance: str = "", now: Callable[[], float] | None = None) -> None:
        import time

        self.core = core
        self.component = component
        self.instance = instance
        self.now = now or time.time
        self._serial = itertools.count()

    def record(self, *, namespace: str, kind: str, name: str, reason: str, message: str,
               api_version: str = "apps/v1", event_type: str = "Normal") -> bool:
        """Record one Event on ``kind/name`` in ``namespace``; True if the API accepted it."""
        stamp = datetime.fromtimestamp(self.now(), tz=timezone.utc)
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{int(self.now() * 1e9) + next(self._serial):x}",
                         "namespace": namespace},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name,
                               "namespace": namespace},
            "reason": reason, "message": message[:1024], "type": event_type,
            "source": {"component": self.component},
            "reportingComponent": self.component, "reportingInstance": self.instance,
            "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "count": 1,
        }
        try:
            self.core.create_namespaced_event(namespace, body)
        except Exception as err:  # RBAC or API trouble: log and go on
            log.warning("cannot record event %s on %s %s/%s: %s", reason, kind, namespace, name,
                        describe(err))
            return False
        return True
