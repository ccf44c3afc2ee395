"""``rlscale controller`` / ``python -m rlscale.controller``: run the in-cluster controller.

    python -m rlscale.controller --config controller.yaml [--kubeconfig PATH] [--mode shadow]
                                 [--once] [--log-level INFO] [--log-format auto|text|json]

Exit codes: 0 after a clean stop (SIGTERM or SIGINT), 2 for a bad config (the message names
the field) or bad arguments, 1 when the Kubernetes API cannot be configured. A policy bundle
that cannot be loaded is not fatal: the error is logged and the fallback heuristic runs
(every decision says ``BundleLoadFailed``). ``--once`` runs one iteration, prints its
:class:`~rlscale.controller.loop.DecisionRecord` as JSON, releases the Lease if it took it (in
either mode) and exits: 0 when it decided (and every write it made succeeded), 3 when it could
not decide (the current state was kept: stale or missing metrics, the API down, no policy) or
a write failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rlscale.configschema import ConfigError
from rlscale.controller.actuator import KubernetesActuator
from rlscale.controller.cluster_state import ClusterReader
from rlscale.controller.config import MODES, ControllerConfig, load_config
from rlscale.controller.kube import KubeClients, describe, load_clients
from rlscale.controller.leader import LeaderElector, default_identity
from rlscale.controller.loop import ControlLoop
from rlscale.controller.observability import (
    ControllerMetrics,
    EventRecorder,
    HealthServer,
)
from rlscale.controller.outside_writes import hpa_targets
from rlscale.controller.policies import build_policy_setup
from rlscale.controller.sources import MetricSource
from rlscale.logformat import LOG_FORMATS, configure_logging

log = logging.getLogger("rlscale.controller")


@dataclass
class Controller:
    """The controller's parts, wired (see :func:`build_controller`)."""

    config: ControllerConfig
    loop: ControlLoop
    source: MetricSource
    metrics: ControllerMetrics
    elector: LeaderElector | None


def build_controller(config: ControllerConfig, clients: KubeClients) -> Controller:
    """Wire source, policy, actuator, leader election and reporting for ``config``.

    Raises:
        ConfigError: a heuristic knob value is invalid.
    """
    setup = build_policy_setup(config)
    for warning in setup.warnings:
        log.warning("%s", warning, extra={"fields": {"event": "ConfigWarning"}})
    reader = ClusterReader(clients, route=config.httproute, gpus=config.gpus)
    source = config.metrics.build(reader, config.staleness_s)
    metrics = ControllerMetrics()
    lease = config.leader_election
    identity = lease.identity or default_identity()
    elector = None
    if lease.enabled and config.mode == "act":  # a shadow never takes the acting one's Lease
        elector = LeaderElector(
            clients.coordination, name=lease.name, namespace=lease.namespace,
            identity=identity, lease_duration_s=lease.lease_duration_s,
            renew_deadline_s=lease.renew_deadline_s, retry_period_s=lease.retry_period_s,
            on_change=lambda leader: metrics.is_leader.set(1.0 if leader else 0.0))
    if elector is not None:
        fence = elector.holds_lease
    else:  # without election an acting controller is the only one; a shadow leads nothing
        fence = (lambda: True) if config.mode == "act" else (lambda: False)
    actuator = KubernetesActuator(clients, fence=fence) if config.mode == "act" else None
    loop = ControlLoop(config, source, setup, actuator=actuator, metrics=metrics,
                       events=EventRecorder(clients.core, instance=identity), is_leader=fence)
    if config.mode == "act" and config.outside_writes.hpa == "refuse":
        refuse_hpa_targets(config, clients, loop)
    return Controller(config, loop, source, metrics, elector)


def refuse_hpa_targets(config: ControllerConfig, clients: KubeClients,
                       loop: ControlLoop) -> None:
    """Hold (never scale) each pool whose Deployment a HorizontalPodAutoscaler targets now;
    an HPA list that fails is logged (the check is then skipped for that namespace)."""
    if clients.autoscaling is None:
        return
    for namespace in sorted({p.namespace for p in config.pools}):
        try:
            targets = hpa_targets(clients.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=10.0))
        except Exception as err:  # RBAC or API trouble: cannot tell, say so
            log.warning("cannot list HorizontalPodAutoscalers in %s: %s", namespace,
                        describe(err), extra={"fields": {"event": "HpaCheckFailed"}})
            continue
        for pool in config.pools:
            hpa = targets.get(pool.deployment) if pool.namespace == namespace else None
            if hpa is not None:
                why = (f"HorizontalPodAutoscaler {namespace}/{hpa} scales Deployment "
                       f"{namespace}/{pool.deployment}: not scaled by rlscale "
                       f"(outside_writes.hpa: refuse)")
                log.warning("%s", why, extra={"fields": {"event": "HpaTarget",
                                                         "pool": pool.name}})
                loop.guard.refuse(pool.name, why)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlscale controller",
        description="Run the in-cluster controller: scale vLLM pools and route traffic.")
    parser.add_argument("--config", required=True, help="controller YAML")
    parser.add_argument("--kubeconfig", default=None,
                        help="kubeconfig file (default: in-cluster service account, else "
                             "$KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="override the config's mode (shadow: decide and log, never write)")
    parser.add_argument("--once", action="store_true",
                        help="run one iteration, print its decision as JSON, exit")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--log-format", default="auto", choices=LOG_FORMATS,
                        help="log lines on stderr: text (for people), json (one object per "
                             "line, for log collectors) or auto (default: text on a terminal, "
                             "else json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the controller; returns the process exit code."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config)
        if args.mode is not None:
            config = replace(config, mode=args.mode)
        try:
            clients = load_clients(args.kubeconfig)
        except Exception as err:  # no kubeconfig, no service account, unreadable file
            print(f"rlscale controller: cannot configure the Kubernetes API client: {err}",
                  file=sys.stderr)
            return 1
        controller = build_controller(config, clients)
    except ConfigError as err:
        print(f"rlscale controller: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.once:
        return _once(controller)
    return _serve(controller)


ONCE_UNDECIDED = 3
"""The exit code of ``--once`` when it could not decide or a write failed."""


def _once(controller: Controller) -> int:
    """One iteration; the Lease is released whatever happens."""
    try:
        if controller.elector is not None:
            controller.elector.tick()
        record = controller.loop.run_once(controller.loop.clock())
    finally:
        if controller.elector is not None:
            controller.elector.release()
        controller.source.close()
    print(json.dumps(record.to_dict()))
    return ONCE_UNDECIDED if record.kept or record.errors else 0


def _serve(controller: Controller) -> int:
    config = controller.config
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = HealthServer(controller.metrics, controller.loop.ready,
                          address=config.http.address, port=config.http.port).start()
    log.info("controller started", extra={"fields": {
        "event": "Started", "mode": config.mode, "pools": list(config.pool_names),
        "policy": controller.loop.setup.name, "http_port": server.port}})
    threads = []
    if controller.elector is not None:
        controller.elector.tick()  # so the first iteration knows whether it may act
        thread = threading.Thread(target=controller.elector.run, args=(stop,),
                                  name="rlscale-leader", daemon=True)
        thread.start()
        threads.append(thread)
    try:
        controller.loop.run_forever(stop)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=config.leader_election.renew_deadline_s)
        server.stop()
        controller.source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
