"""The files the twin writes for its users: a kubeconfig, a controller config, and a
Prometheus ``file_sd`` target list.

**Time.** The twin runs the simulator ``speed`` times faster than the wall clock, while the
controller measures time with the wall clock: at speed N, counters grow N times faster per wall
second, so every rate the controller computes (arrivals, tokens) is N times the simulated one,
and N wall seconds hold N × as much simulated time. The generated controller config states
everything in the controller's terms so that its heuristics see what they would see in a real
cluster: every duration (decision interval, observation windows, the planner's delays) is the
scenario's simulated duration divided by N, and every per-replica capacity (``capacity_rps``)
is multiplied by N. Latencies (TTFT, inter-token) come from the pods' histograms in simulated
seconds and compare to the SLO unchanged. Gauges (running, waiting, KV-cache usage) need no
change. A policy bundle brings its own observation config (capacities, windows), so at speed
N it sees N-fold rates; unless N is small, its observations leave the training range and the
shield's fallback decides (``FallbackOutOfRange``). Leader election runs on wall time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlscale.configschema import MAX_TOKENS_PER_S_PER_GPU
from rlscale.metrics.observation_config import PoolInfo
from rlscale.sim.control import control_config
from rlscale.sim.scenario import Scenario
from rlscale.twin.objects import GPU_LABEL, GPU_RESOURCE

PLANNER_DURATIONS_S = {"trend_window_s": 300.0, "backlog_drain_s": 60.0,
                       "scale_down_delay_s": 120.0}
"""The planner's duration knobs (its defaults, simulated seconds), divided by the speed."""


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it), so a reader
    (Prometheus watching a file_sd file) never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def kubeconfig(server: str, namespace: str, name: str = "rlscale-twin") -> dict[str, Any]:
    """A kubeconfig for ``server`` (plain HTTP, no credentials) with ``namespace`` as the
    default namespace."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": server}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                    "namespace": namespace}}],
            "current-context": name}


def _r(value: float) -> float:
    return float(f"{value:.4g}")


def controller_config(scenario: Scenario, *, speed: float, namespace: str, route: str,
                      metrics_port: int, pools: Sequence[PoolInfo],
                      http_port: int = 8080, deployments: Mapping[str, str] | None = None,
                      backends: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A controller config for the twin of ``scenario`` at ``speed`` (see the module
    docstring): the planner heuristic, pods scraped on ``metrics_port``, the HTTPRoute, leader
    election in ``namespace``; ``pools`` as the observation knows them
    (:func:`rlscale.sim.pool_info.pool_infos`, capacities in simulated requests/s). A pool's
    Deployment is ``deployments[pool]`` and the HTTPRoute's backendRefs are ``backends``
    (Service -> pool); both default to the pool's own name."""
    control = control_config(scenario)
    interval_s = control.interval_s / speed
    lease_s = max(3.0, 15.0 / speed)
    knobs = {k: _r(v / speed) for k, v in PLANNER_DURATIONS_S.items()}
    cluster = scenario.cluster
    pool_entries = [{
        "name": info.name, "namespace": namespace,
        "deployment": (deployments or {}).get(info.name, info.name),
        "min_replicas": p.min_replicas, "max_replicas": info.max_replicas,
        "gpu_type": info.gpu_type, "gpus_per_replica": info.gpus_per_replica,
        "max_num_seqs": info.max_num_seqs,
        "price_per_replica_hour": _r(info.price_per_replica_hour),
        "capacity_rps": _r(info.capacity_rps * speed),
        "gpu_inventory": info.gpu_inventory,
    } for p, info in zip(cluster.pools, pools, strict=True)]
    return {
        "interval_s": _r(interval_s),
        "staleness_s": _r(max(3.0 * interval_s, 5.0)),
        "mode": "act",
        "slo": {"ttft_s": scenario.slo.ttft_s, "itl_s": scenario.slo.itl_s},
        "observation": {"long_window_s": _r(control.history_s / speed),
                        "day_length_s": _r(control.day_length_s / speed)},
        "pools": pool_entries,
        "httproute": {"namespace": namespace, "name": route,
                      "backends": dict(backends or {p.name: p.name for p in cluster.pools})},
        "policy": {"heuristic": "planner", "knobs": dict(knobs)},
        "fallback": {"heuristic": "planner", "knobs": dict(knobs)},
        "metrics": {"source": "pods", "port": metrics_port,
                    "timeout_s": _r(min(2.0, max(0.25, interval_s)))},
        "gpus": {"node_label": GPU_LABEL, "resource": GPU_RESOURCE},
        # pods' counters grow `speed` times faster per wall second
        "plausibility": {"tokens_per_s_per_gpu": _r(MAX_TOKENS_PER_S_PER_GPU * speed)},
        "leader_election": {"enabled": True, "name": "rlscale-controller",
                            "namespace": namespace, "lease_duration_s": _r(lease_s),
                            "renew_deadline_s": _r(lease_s * 2 / 3),
                            "retry_period_s": _r(lease_s * 2 / 15)},
        "http": {"address": "127.0.0.1", "port": http_port},
    }


def render_controller_config(config: Mapping[str, Any], *, scenario: str,
                             speed: float) -> str:
    """The config as YAML, with a header saying how time is scaled."""
    header = (
        f"# Controller config for the rlscale twin of scenario {scenario!r} at speed {speed:g}\n"
        f"# (written by `rlscale twin`; see rlscale/twin/files.py). The twin's clock runs\n"
        f"# {speed:g}x the wall clock: durations here are simulated seconds / {speed:g}, and\n"
        f"# capacity_rps is simulated requests/s x {speed:g}, because the controller measures\n"
        f"# time and rates with the wall clock. To run another heuristic, divide its *_s knobs\n"
        f"# by {speed:g} as well. `rlscale controller --config THIS --kubeconfig KUBECONFIG`.\n")
    return header + yaml.safe_dump(dict(config), sort_keys=False)


def file_sd(targets: Sequence[tuple[str, str, str]], namespace: str) -> list[dict[str, Any]]:
    """Prometheus ``file_sd_configs`` entries, one per pod: ``(pod, pool, host:port)`` with the
    labels the controller's PromQL groups by (``namespace``, ``pod``) and ``pool``."""
    return [{"targets": [address], "labels": {"namespace": namespace, "pod": pod,
                                               "pool": pool, "job": "vllm"}}
            for pod, pool, address in sorted(targets)]


def write_file_sd(path: str | os.PathLike[str], targets: Sequence[tuple[str, str, str]],
                  namespace: str) -> None:
    """Write the ``file_sd`` JSON atomically."""
    write_text(path, json.dumps(file_sd(targets, namespace), indent=1) + "\n")


def write_kubeconfig(path: str | os.PathLike[str], server: str, namespace: str) -> None:
    """Write a kubeconfig for ``server``."""
    write_text(path, yaml.safe_dump(kubeconfig(server, namespace), sort_keys=False))
