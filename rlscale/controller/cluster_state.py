"""What the Kubernetes API says about the pools: replicas, pods, routing weights, free GPUs.

Per pool (its Deployment, found by namespace and name):

* ``desired`` is the Deployment's ``spec.replicas``; its pods are listed through the
  Deployment's label selector (``matchLabels`` and ``matchExpressions``);
* each pod that has not finished (phase not ``Succeeded``/``Failed``) counts once:
  **draining** if it has a ``deletionTimestamp`` (terminating; still finishing requests),
  else **ready** if its ``Ready`` condition is ``True``, else **pending** if it is not
  scheduled (no node, ``PodScheduled`` not ``True``: waiting for a GPU), else **starting**
  (scheduled, cold-starting);
* pods in phase ``Running`` with an IP are scraped (draining ones too), with
  ``PodSample.ready`` false for those that are not ready.

Routing weights come from the HTTPRoute: in the first rule that names one of the configured
backendRefs, a pool's weight is the sum of its backendRefs' ``weight`` (Gateway API default
1); a configured backendRef that no rule names is reported (``BackendRefMissing``). Free GPUs
per type: for every schedulable, ready node carrying the GPU label (``gpus.node_label``, e.g.
``nvidia.com/gpu.product``, as set by NVIDIA's GPU feature discovery), allocatable
``nvidia.com/gpu`` minus what the pods scheduled on it request (``max(sum of containers,
largest init container)``, requests or else limits). Those pods are listed per namespace (the
pools' namespaces: a Role there suffices; GPUs that pods of other namespaces hold then look
free) unless ``gpus.pod_scope: cluster`` asks for a cluster-wide list (and a ClusterRole).

Nothing here raises for an API failure: it becomes a :class:`Problem`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlscale.controller.kube import KubeClients, describe, get
from rlscale.controller.outside_writes import replicas_manager
from rlscale.controller.problems import Problem
from rlscale.controller.resources import GpuConfig, PoolConfig, RouteConfig

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTES = "httproutes"


@dataclass(frozen=True)
class PodInfo:
    """One pod of a pool as the API shows it (``ip`` None until it has one)."""

    name: str
    pool: str
    ip: str | None
    phase: str
    ready: bool
    terminating: bool
    scheduled: bool

    @property
    def scrapeable(self) -> bool:
        """Running with an IP: its ``/metrics`` can be read (draining pods too)."""
        return self.phase == "Running" and bool(self.ip)


@dataclass(frozen=True)
class PoolState:
    """A pool's Deployment and pods (replica counts as in the module docstring)."""

    pool: str
    desired: int
    ready: int
    starting: int
    pending: int
    draining: int
    unavailable: int
    pods: tuple[PodInfo, ...]
    replicas_manager: str | None = None
    """The field manager owning ``spec.replicas`` (from ``managedFields``; None: unknown)."""
    @property
    def scrape_targets(self) -> tuple[PodInfo, ...]:
        """The pods whose metrics are expected."""
        return tuple(p for p in self.pods if p.scrapeable)


@dataclass(frozen=True)
class ClusterState:
    """The pools that could be read, routing weights and free GPUs (None: unknown)."""

    pools: dict[str, PoolState]
    weights: dict[str, float] | None
    free_gpus: dict[str, int] | None
    problems: tuple[Problem, ...]


# ---------------------------------------------------------------------------------- reader
class ClusterReader:
    """Reads :class:`ClusterState` through the Kubernetes API."""

    def __init__(self, clients: KubeClients, *, route: RouteConfig | None = None,
                 gpus: GpuConfig | None = None, timeout_s: float = 10.0) -> None:
        self.clients = clients
        self.route = route
        self.gpus = gpus or GpuConfig()
        self.timeout_s = timeout_s

    def read(self, pools: Sequence[PoolConfig]) -> ClusterState:
        """Every pool's Deployment and pods, the route's weights and the free GPUs."""
        problems: list[Problem] = []
        states: dict[str, PoolState] = {}
        for pool in pools:
            try:
                states[pool.name] = self.read_pool(pool)
            except Exception as err:  # any API or decoding failure is reported, not raised
                problems.append(Problem(
                    "DeploymentUnavailable", "missing",
                    f"cannot read Deployment {pool.namespace}/{pool.deployment} or its pods: "
                    f"{describe(err)}", pool=pool.name))
        weights = self._weights(pools, problems)
        free = self._free_gpus(sorted({p.namespace for p in pools}), problems)
        return ClusterState(states, weights, free, tuple(problems))

    def read_pool(self, pool: PoolConfig) -> PoolState:
        """One pool's state (raises the API's errors)."""
        deployment = self.clients.apps.read_namespaced_deployment(
            pool.deployment, pool.namespace, _request_timeout=self.timeout_s)
        selector = label_selector(get(deployment, "spec", "selector"))
        listed = self.clients.core.list_namespaced_pod(
            pool.namespace, label_selector=selector, _request_timeout=self.timeout_s)
        pods = tuple(sorted((pod_info(p, pool.name) for p in (get(listed, "items") or [])
                             if get(p, "status", "phase") not in ("Succeeded", "Failed")),
                            key=lambda p: p.name))
        draining = sum(p.terminating for p in pods)
        ready = sum(p.ready for p in pods)
        pending = sum(not p.terminating and not p.ready and not p.scheduled for p in pods)
        return PoolState(
            pool=pool.name, desired=int(get(deployment, "spec", "replicas") or 0), ready=ready,
            starting=len(pods) - draining - ready - pending, pending=pending, draining=draining,
            unavailable=int(get(deployment, "status", "unavailable_replicas") or 0), pods=pods,
            replicas_manager=replicas_manager(deployment))

    def _weights(self, pools: Sequence[PoolConfig],
                 problems: list[Problem]) -> dict[str, float] | None:
        if self.route is None:
            return None
        route = self.route
        try:
            obj = self.clients.custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, route.namespace, HTTPROUTES, route.name,
                _request_timeout=self.timeout_s)
            weights = route_weights(obj, route, [p.name for p in pools])
        except Exception as err:  # reported; the decision then assumes equal weights
            problems.append(Problem("RouteUnavailable", "degraded",
                                    f"cannot read HTTPRoute {route.namespace}/{route.name}: "
                                    f"{describe(err)}"))
            return None
        absent = missing_backends(obj, route)
        if absent:  # reported whatever weight is wanted for them (0 included)
            problems.append(Problem(
                "BackendRefMissing", "degraded",
                f"HTTPRoute {route.namespace}/{route.name} has no backendRef named {absent} "
                f"(configured for pool(s) {sorted({route.backends[b] for b in absent})}): "
                f"their pools get no traffic and their weights cannot be set"))
        return weights

    def _free_gpus(self, namespaces: Sequence[str],
                   problems: list[Problem]) -> dict[str, int] | None:
        running = "status.phase!=Succeeded,status.phase!=Failed"
        core = self.clients.core
        try:
            nodes = core.list_node(label_selector=self.gpus.node_label,
                                   _request_timeout=self.timeout_s)
            if self.gpus.pod_scope == "cluster":
                pods = get(core.list_pod_for_all_namespaces(
                    field_selector=running, _request_timeout=self.timeout_s), "items") or []
            else:
                pods = [pod for namespace in namespaces for pod in get(core.list_namespaced_pod(
                    namespace, field_selector=running, _request_timeout=self.timeout_s),
                    "items") or []]
            return free_gpus(get(nodes, "items") or [], pods, self.gpus)
        except Exception as err:  # reported; the loop then estimates from the inventory
            problems.append(Problem("GpuInventoryUnavailable", "degraded",
                                    f"cannot list nodes and pods for free GPUs: "
                                    f"{describe(err)}"))
            return None


# ---------------------------------------------------------------------------------- helpers
def label_selector(selector: Any) -> str:
    """A Deployment's ``spec.selector`` as a label-selector string (``app=vllm,tier in (a)``)."""
    parts = [f"{k}={v}" for k, v in sorted((get(selector, "match_labels") or {}).items())]
    for expr in get(selector, "match_expressions") or []:
        key, op = get(expr, "key"), get(expr, "operator")
        values = ",".join(get(expr, "values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {op!r}")
    if not parts:
        raise ValueError("the Deployment has an empty selector")
    return ",".join(parts)


def pod_info(pod: Any, pool: str) -> PodInfo:
    """A listed pod (``V1Pod``) as :class:`PodInfo`."""
    conditions = {get(c, "type"): get(c, "status")
                  for c in get(pod, "status", "conditions") or []}
    terminating = get(pod, "metadata", "deletion_timestamp") is not None
    return PodInfo(
        name=str(get(pod, "metadata", "name")), pool=pool, ip=get(pod, "status", "pod_ip"),
        phase=str(get(pod, "status", "phase") or "Unknown"),
        ready=conditions.get("Ready") == "True" and not terminating, terminating=terminating,
        scheduled=bool(get(pod, "spec", "node_name")) or conditions.get("PodScheduled") == "True")


def route_weights(route: Any, config: RouteConfig, pools: Sequence[str]) -> dict[str, float]:
    """Each pool's weight in the first rule of ``route`` (a dict) naming its backendRefs."""
    for rule in get(route, "spec", "rules") or []:
        refs = [r for r in get(rule, "backendRefs") or [] if get(r, "name") in config.backends]
        if refs:
            weights = dict.fromkeys(pools, 0.0)
            for ref in refs:
                weight = get(ref, "weight")
                weights[config.backends[str(get(ref, "name"))]] += float(
                    1 if weight is None else weight)
            return weights
    raise ValueError(f"no rule of the HTTPRoute has a backendRef named one of "
                     f"{sorted(config.backends)}")


def missing_backends(route: Any, config: RouteConfig) -> list[str]:
    """The configured backendRef names that no rule of ``route`` (a dict) has."""
    present = {get(ref, "name") for rule in get(route, "spec", "rules") or []
               for ref in get(rule, "backendRefs") or []}
    return sorted(set(config.backends) - present)


def _quantity(value: Any) -> int:
    """An extended-resource quantity (``"8"``) as an integer; 0 if unreadable."""
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


def _pod_gpus(pod: Any, resource: str) -> int:
    def need(container: Any) -> int:
        requests = get(container, "resources", "requests") or {}
        limits = get(container, "resources", "limits") or {}
        return _quantity(requests.get(resource, limits.get(resource, 0)))

    main = sum(need(c) for c in get(pod, "spec", "containers") or [])
    init = max((need(c) for c in get(pod, "spec", "init_containers") or []), default=0)
    return max(main, init)


def free_gpus(nodes: Sequence[Any], pods: Sequence[Any], gpus: GpuConfig) -> dict[str, int]:
    """Free GPUs per type on schedulable, ready nodes carrying the GPU label."""
    used: dict[str, int] = {}
    for pod in pods:
        node = get(pod, "spec", "node_name")
        if node and get(pod, "status", "phase") not in ("Succeeded", "Failed"):
            used[node] = used.get(node, 0) + _pod_gpus(pod, gpus.resource)
    free: dict[str, int] = {}
    for node in nodes:
        label = (get(node, "metadata", "labels") or {}).get(gpus.node_label)
        if not label:
            continue
        gpu_type = gpus.gpu_type(label)
        free.setdefault(gpu_type, 0)
        ready = any(get(c, "type") == "Ready" and get(c, "status") == "True"
                    for c in get(node, "status", "conditions") or [])
        if get(node, "spec", "unschedulable") or not ready:
            continue
        allocatable = _quantity((get(node, "status", "allocatable") or {}).get(gpus.resource, 0))
        name = get(node, "metadata", "name")
        free[gpu_type] += max(0, allocatable - used.get(name, 0))
    return free
