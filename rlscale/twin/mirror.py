"""Keeping the simulated cluster and its Kubernetes API in step, in both directions.

* **API → simulator** (:meth:`Mirror.apply_api`): a Deployment's ``spec.replicas`` (however it
  was written: the scale subresource, a PATCH or PUT of the Deployment) becomes the pool's
  desired replicas in the simulator (new pods wait for GPUs, then cold-start; removed ones
  drain); the HTTPRoute's ``backendRefs`` weights become the simulated router's pool weights.
* **simulator → API** (:meth:`Mirror.publish`): every simulated pod is a Pod (see
  :mod:`rlscale.twin.objects` for the mapping), written only when what it shows changed; each
  Deployment's ``status`` (replicas, readyReplicas, updatedReplicas, availableReplicas,
  observedGeneration) follows its pods.

Deployments and pools share names (pool ``llama3-8b-a100`` is Deployment and Service
``llama3-8b-a100`` in the namespace); the HTTPRoute's backendRefs name the Services. The twin
owns these objects: one deleted through the API is written again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import Pod, PodPhase
from rlscale.twin.kubeapi import (
    DEPLOYMENTS,
    HTTPROUTES,
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    Kube,
    timestamp,
)
from rlscale.twin.objects import (
    PodView,
    deployment_object,
    deployment_status,
    http_route_object,
    namespace_object,
    node_object,
    pod_object,
    route_pool_weights,
    route_weights,
    service_object,
)
from rlscale.twin.pod_metrics import IpPool

_STATES = {PodPhase.PENDING: "pending", PodPhase.STARTING: "starting",
           PodPhase.READY: "ready", PodPhase.DRAINING: "draining"}


def node_name(gpu_type: str) -> str:
    """The node holding every GPU of ``gpu_type`` (a DNS label)."""
    return "gpu-" + re.sub(r"[^a-z0-9]+", "-", gpu_type.lower()).strip("-")


@dataclass
class History:
    """What the API asked of the simulator, in order.

    Attributes:
        replicas: per pool, ``(simulated s, Unix s, replicas)`` at start and at each change.
        weights: ``(simulated s, Unix s, {pool: weight})`` at start and at each change.
    """

    replicas: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    weights: list[tuple[float, float, dict[str, float]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of ``[sim_s, wall_s, value]``."""
        return {"replicas": {k: [list(x) for x in v] for k, v in self.replicas.items()},
                "weights": [[s, w, d] for s, w, d in self.weights]}


class PoolMirror:
    """What every mirror of a simulated cluster holds: the pools, their pods' addresses, the
    routing weights in force and the history of what the API asked.

    Args:
        cluster: the simulator.
        namespace: where the pools' objects live; route: the HTTPRoute's name.
        port: the vLLM port the Pods and Services name; model_names: per pool.
        ips: where pod addresses come from; clock: Unix seconds (object timestamps).
    """

    def __init__(self, cluster: Cluster, *, namespace: str, route: str, port: int,
                 model_names: Mapping[str, str], ips: IpPool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.route = route
        self.port = port
        self.model_names = dict(model_names)
        self.ips = ips or IpPool()
        self.clock = clock
        self.pools = [p.name for p in cluster.pools]
        self.history = History()
        self.pod_ips: dict[str, str] = {}
        """Address of every scheduled pod (by simulated pod name)."""
        self._weights: dict[str, float] | None = None

    @property
    def weights(self) -> dict[str, float]:
        """The pool weights in force (from the HTTPRoute)."""
        return dict(self._weights or {})

    def _follow_weights(self, route: Mapping[str, Any] | None,
                        backends: Mapping[str, str] | None = None) -> list[str]:
        """Apply the HTTPRoute's weights (``backends``: Service -> pool) to the simulator if
        they changed; returns the change for the log."""
        weights = route_pool_weights(route, self.pools, backends) if route is not None else None
        if weights is None or weights == self._weights:
            return []
        change = [f"weights {self._weights} -> {weights}"] if self._weights is not None else []
        self._weights = weights
        self.cluster.set_weights([weights[p] for p in self.pools])
        self.history.weights.append((self.cluster.now_s, self.clock(), dict(weights)))
        return change

    def _ip(self, pod: Pod) -> str:
        """The pod's address (given when it is first scheduled)."""
        ip = self.pod_ips.get(pod.name)
        if ip is None:
            ip = self.pod_ips[pod.name] = self.ips.take()
        return ip

    def api_name(self, pod: str) -> str:
        """The name the API shows for the simulated pod named ``pod`` (the same here)."""
        return pod

    def serving_pods(self) -> dict[str, tuple[str, str]]:
        """``pod -> (pool, ip)`` of the pods whose vLLM engine runs (ready or draining), by
        their API names."""
        out = {}
        for index, pods in enumerate(self.cluster.pool_pods):
            for pod in pods:
                if pod.engine is not None:
                    out[self.api_name(pod.name)] = (self.pools[index], self._ip(pod))
        return out


class Mirror(PoolMirror):
    """Syncs a :class:`~rlscale.sim.cluster.Cluster` with a :class:`~rlscale.twin.kubeapi.Kube`.

    Args:
        kube: the API; the others: see :class:`PoolMirror`.
    """

    def __init__(self, kube: Kube, cluster: Cluster, *, namespace: str, route: str,
                 port: int, model_names: Mapping[str, str], ips: IpPool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(cluster, namespace=namespace, route=route, port=port,
                         model_names=model_names, ips=ips, clock=clock)
        self.kube = kube
        self._views: dict[str, PodView] = {}
        self._created: dict[int, str] = {}
        self._deleted: dict[int, str] = {}
        self._statuses: dict[str, dict[str, Any]] = {}
        self._generations: dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    async def seed(self) -> None:
        """Write the namespace, GPU nodes, Services, Deployments and the HTTPRoute, and the
        pods as the simulator has them."""
        kube, ns, cluster = self.kube, self.namespace, self.cluster
        await kube.put_object(NAMESPACES, None, ns, namespace_object(ns))
        for gpu_type, count in sorted(cluster.gpu_total.items()):
            name = node_name(gpu_type)
            await kube.put_object(NODES, None, name, node_object(name, gpu_type, count))
        for pool in cluster.pools:
            await kube.put_object(SERVICES, ns, pool.name,
                                  service_object(pool.name, ns, self.port))
            await self._write_deployment(pool.name)
        weights = {p.name: w for p, w in zip(cluster.pools, cluster.router.weights, strict=True)}
        await kube.put_object(HTTPROUTES, ns, self.route, http_route_object(
            self.route, ns, route_weights(weights), self.port))
        now_s, wall_s = cluster.now_s, self.clock()
        for index, name in enumerate(self.pools):
            self.history.replicas[name] = [(now_s, wall_s, cluster.desired[index])]
        self.apply_api()
        await self.publish()

    async def _write_deployment(self, pool: str) -> dict[str, Any]:
        index = self.pools.index(pool)
        spec = self.cluster.pools[index]
        body = deployment_object(pool, self.namespace, self.cluster.desired[index],
                                 model=self.model_names.get(pool, spec.profile.model),
                                 port=self.port, gpus=spec.gpus_per_replica,
                                 grace_s=round(self.cluster.spec.drain_timeout_s))
        return await self.kube.put_object(DEPLOYMENTS, self.namespace, pool, body)

    # ------------------------------------------------------------------ API -> simulator
    def apply_api(self) -> list[str]:
        """Apply the Deployments' ``spec.replicas`` and the HTTPRoute's weights to the
        simulator; returns what changed (for the log)."""
        cluster, changes = self.cluster, []
        now_s, wall_s = cluster.now_s, self.clock()
        for index, pool in enumerate(self.pools):
            deployment = self.kube.get_object(DEPLOYMENTS, self.namespace, pool)
            if deployment is None:
                continue
            self._generations[pool] = int(deployment["metadata"].get("generation") or 1)
            replicas = (deployment.get("spec") or {}).get("replicas")
            if (isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0
                    and replicas != cluster.desired[index]):
                changes.append(f"{pool}: replicas {cluster.desired[index]} -> {replicas}")
                cluster.set_replicas(index, replicas)
                self.history.replicas[pool].append((now_s, wall_s, replicas))
        route = self.kube.get_object(HTTPROUTES, self.namespace, self.route)
        changes += self._follow_weights(route)
        return changes

    # ------------------------------------------------------------------ simulator -> API
    def _view(self, pod: Pod) -> PodView:
        state = _STATES[pod.phase]
        created = self._created.setdefault(pod.id, timestamp(self.clock()))
        deleted = None
        if state == "draining":
            deleted = self._deleted.setdefault(pod.id, timestamp(self.clock()))
        ip = self._ip(pod) if state != "pending" else None
        pool = self.cluster.pools[pod.pool]
        return PodView(pod.name, pool.name, state, ip,
                       node_name(pool.gpu_type) if state != "pending" else None,
                       pod.gpus, created, deleted, round(self.cluster.spec.drain_timeout_s))

    async def publish(self) -> None:
        """Write every pod whose state changed, delete the gone ones, update the
        Deployments' status."""
        kube, ns = self.kube, self.namespace
        seen: dict[str, PodView] = {}
        for pods in self.cluster.pool_pods:
            for pod in pods:
                if pod.phase == PodPhase.GONE:
                    continue
                view = self._view(pod)
                seen[view.name] = view
                if self._views.get(view.name) != view or not kube.exists(PODS, ns, view.name):
                    pool = view.pool
                    await kube.put_object(PODS, ns, view.name, pod_object(
                        view, ns, model=self.model_names.get(pool, pool), port=self.port))
        for name in sorted(set(self._views) - set(seen)):
            await kube.delete_object(PODS, ns, name)
        for name in set(self.pod_ips) - set(seen):
            self.ips.release(self.pod_ips.pop(name))
        live_ids = {p.id for pods in self.cluster.pool_pods for p in pods}
        for book in (self._created, self._deleted):
            for pod_id in set(book) - live_ids:
                del book[pod_id]
        self._views = seen
        for pool in self.pools:
            await self._publish_status(pool, [v for v in seen.values() if v.pool == pool])

    async def _publish_status(self, pool: str, pods: list[PodView]) -> None:
        index = self.pools.index(pool)
        deployment = self.kube.get_object(DEPLOYMENTS, self.namespace, pool)
        if deployment is None:  # deleted through the API: the twin owns it, write it again
            deployment = await self._write_deployment(pool)
        generation = self._generations.get(pool, 1)
        status = deployment_status(self.cluster.desired[index], pods, generation)
        if status != deployment.get("status"):
            await self.kube.put_object(DEPLOYMENTS, self.namespace, pool,
                                       {**deployment, "status": status})
        self._statuses[pool] = status

    def pod_views(self) -> list[PodView]:
        """The pods as last published."""
        return [replace(v) for v in self._views.values()]
