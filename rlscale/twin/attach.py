"""The twin as a virtual GPU node pool of a real Kubernetes API server (``rlscale twin
--kubeconfig FILE``), the way KWOK fakes nodes and kubelets.

The API server and its controllers are real; the twin plays the nodes, the kubelets and vLLM:

* **Nodes.** One Node per GPU type of the scenario (``gpu-h100-sxm5-80gb``...), labelled
  ``nvidia.com/gpu.product=<GPU type>`` with the inventory as allocatable ``nvidia.com/gpu``,
  kept alive by renewing its Lease in ``kube-node-lease`` (the kubelet's heartbeat).
* **Pools.** A pool is every Pod in the namespace labelled ``rlscale.io/pool=<pool name>``,
  whoever made it: normally the real ReplicaSet controller, from a Deployment whose pod
  template carries the label. :meth:`AttachedMirror.seed` finds that Deployment per pool; where
  there is none it creates the twin's own (and a Service), and it creates the HTTPRoute when
  it is missing and the Gateway API CRD is installed.
* **API → simulator** (:meth:`AttachedMirror.apply_api`): a new Pod of a pool becomes a new
  simulated pod (waiting for a GPU, then cold-starting); a Pod the ReplicaSet deletes
  (``deletionTimestamp`` set) drains in the simulator; the HTTPRoute's backendRef weights
  (a backendRef names a Service; the pool is the one whose pod template the Service selects)
  become the simulated router's weights. The Deployments' ``spec.replicas`` are recorded in
  the history (who wrote them is the API server's business: ``managedFields``).
* **simulator → API** (:meth:`AttachedMirror.publish`): a simulated pod that got its GPU is
  bound to its Node (the Binding subresource, as the scheduler would) and its status shows
  Running, not Ready, with its pod IP (a loopback address where the twin serves its vLLM
  ``/metrics``); Ready once cold-started; not Ready while draining; a drained pod is deleted
  (grace period 0, as the kubelet confirms a deletion). Deployment and ReplicaSet status is
  left to the real controllers.

It calls the API with the official ``kubernetes`` client, synchronously, from the twin's loop
(a few calls per tick).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import Pod, PodPhase
from rlscale.twin.mirror import PoolMirror, node_name
from rlscale.twin.objects import (
    deployment_object,
    http_route_object,
    namespace_object,
    node_object,
    route_weights,
    service_object,
)
from rlscale.twin.pod_metrics import IpPool

POOL_LABEL = "rlscale.io/pool"
"""The label naming a Pod's pool (on the Deployment's pod template)."""
ROUTE_GROUP, ROUTE_VERSION, ROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_LEASE_S = 40
"""The node Leases' duration (the kubelet's default), renewed every quarter of it."""
FIELD_MANAGER = "rlscale-twin"


class AttachError(RuntimeError):
    """The API server refused what the twin needs (the message names the call)."""


def rfc3339(unix_s: float) -> str:
    """Unix seconds as RFC 3339 with microseconds (a Lease's ``renewTime``)."""
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_api(kubeconfig: str) -> Any:
    """A ``kubernetes.client.ApiClient`` for ``kubeconfig`` (a path).

    Raises:
        AttachError: the file is missing or not a usable kubeconfig.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped in some client versions
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (OSError, ValueError, config.ConfigException) as err:
        raise AttachError(f"cannot use kubeconfig {kubeconfig}: {err}") from None
    return client.ApiClient(configuration=configuration)


class KubeCalls:
    """The few API calls the twin makes, as JSON dicts (``_preload_content=False``).

    Args:
        api_client: a ``kubernetes.client.ApiClient``.
    """

    def __init__(self, api_client: Any) -> None:
        import urllib3
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.exception: type[Exception] = client.ApiException
        self.unreachable: tuple[type[Exception], ...] = (urllib3.exceptions.HTTPError, OSError)
        """Errors of a server that does not answer (refused, reset, timed out)."""

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data or b"null")

    def status(self, err: BaseException) -> int | None:
        """The HTTP status of an API error, None for another error."""
        return getattr(err, "status", None) if isinstance(err, self.exception) else None

    def call(self, method: Callable[..., Any], *args: Any, missing_ok: bool = False,
             **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` decoded; None for a 404 when ``missing_ok``.

        Raises:
            AttachError: any other API error (status and the method's name), or no answer.
        """
        try:
            return self._json(method(*args, _preload_content=False, **kwargs))
        except self.exception as err:
            if missing_ok and self.status(err) == 404:
                return None
            raise self._error(method, err) from None
        except self.unreachable as err:
            raise self._error(method, err) from None

    def create(self, method: Callable[..., Any], *args: Any) -> Any:
        """A create call where "already exists" (409) is fine: None then.

        Raises:
            AttachError: any other API error, or no answer.
        """
        try:
            return self._json(method(*args, _preload_content=False,
                                     field_manager=FIELD_MANAGER))
        except self.exception as err:
            if self.status(err) == 409:
                return None
            raise self._error(method, err) from None
        except self.unreachable as err:
            raise self._error(method, err) from None

    def _error(self, method: Callable[..., Any], err: Exception) -> AttachError:
        status = self.status(err)
        if status is None:
            return AttachError(f"{method.__name__}: no answer ({type(err).__name__})")
        body = (getattr(err, "body", "") or "")[:300]
        return AttachError(f"{method.__name__}: HTTP {status} {getattr(err, 'reason', '')}: "
                           f"{body}")


class AttachedMirror(PoolMirror):
    """Syncs a :class:`~rlscale.sim.cluster.Cluster` with a real API server (module docstring).

    Args:
        calls: the API calls; cluster: the simulator (its initial pods are removed: the
            API's Pods drive it); the others: see :class:`~rlscale.twin.mirror.PoolMirror`.
    """

    def __init__(self, calls: KubeCalls, cluster: Cluster, *, namespace: str, route: str,
                 port: int, model_names: Mapping[str, str], ips: IpPool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(cluster, namespace=namespace, route=route, port=port,
                         model_names=model_names, ips=ips, clock=clock)
        self.calls = calls
        self.deployments: dict[str, str] = {}
        """Pool -> the Deployment whose pod template carries its label."""
        self.backends: dict[str, str] = {}
        """Service (HTTPRoute backendRef) -> pool."""
        self._pairs: dict[str, Pod] = {}
        """Real Pod uid -> its simulated pod."""
        self._names: dict[str, str] = {}
        """The API's name of each paired simulated pod (by simulated pod name)."""
        self._pods: dict[str, dict[str, Any]] = {}
        """Real Pod uid -> the Pod as last listed."""
        self._shown: dict[str, str] = {}
        """Real Pod uid -> the state last written to its status."""
        self._replicas: dict[str, int] = {}
        self._lease_renewed = -float("inf")
        for pods in cluster.pool_pods:
            for pod in list(pods):
                cluster.remove_pod(pod)

    # ------------------------------------------------------------------ setup
    async def seed(self) -> None:
        """Create the namespace and the GPU Nodes; find (or create) each pool's Deployment,
        the Services and the HTTPRoute; apply what the API shows."""
        calls, ns, cluster = self.calls, self.namespace, self.cluster
        calls.create(calls.core.create_namespace, namespace_object(ns))
        for gpu_type, count in sorted(cluster.gpu_total.items()):
            name = node_name(gpu_type)
            node = node_object(name, gpu_type, count)
            calls.create(calls.core.create_node, {k: v for k, v in node.items()
                                                  if k != "status"})
            calls.call(calls.core.patch_node_status, name, {"status": node["status"]})
        self._renew_node_leases()
        pod_labels: dict[str, dict[str, str]] = {}
        found = calls.call(calls.apps.list_namespaced_deployment, ns)["items"]
        for deployment in found:
            template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata")
            labels = (template or {}).get("labels") or {}
            pool = labels.get(POOL_LABEL)
            if pool in self.pools and pool not in self.deployments:
                self.deployments[pool] = deployment["metadata"]["name"]
                pod_labels[pool] = labels
        for index, pool in enumerate(self.pools):
            if pool in self.deployments:
                continue
            spec = cluster.pools[index]
            body = deployment_object(pool, ns, spec.initial_replicas,
                                     model=self.model_names.get(pool, spec.profile.model),
                                     port=self.port, gpus=spec.gpus_per_replica,
                                     grace_s=round(cluster.spec.drain_timeout_s))
            calls.create(calls.apps.create_namespaced_deployment, ns, body)
            calls.create(calls.core.create_namespaced_service, ns,
                         service_object(pool, ns, self.port))
            self.deployments[pool] = pool
            pod_labels[pool] = body["spec"]["template"]["metadata"]["labels"]
        for service in calls.call(calls.core.list_namespaced_service, ns)["items"]:
            selector = ((service.get("spec") or {}).get("selector") or {}).items()
            pool = next((p for p, labels in pod_labels.items()
                         if selector and selector <= labels.items()), None)
            if pool is not None:
                self.backends[service["metadata"]["name"]] = pool
        self._seed_route()
        now_s, wall_s = cluster.now_s, self.clock()
        for pool in self.pools:
            self.history.replicas[pool] = [(now_s, wall_s, 0)]
        self.apply_api()
        self.publish_sync()

    @property
    def server(self) -> str:
        """The API server's URL."""
        host: str = self.calls.core.api_client.configuration.host
        return host

    def _seed_route(self) -> None:
        calls, ns = self.calls, self.namespace
        if self._get_route() is not None:
            return
        services = {pool: service for service, pool in sorted(self.backends.items())}
        weights = {services[p.name]: w for p, w in zip(
            self.cluster.pools, self.cluster.router.weights, strict=True) if p.name in services}
        body = http_route_object(self.route, ns, route_weights(weights), self.port)
        try:
            calls.custom.create_namespaced_custom_object(
                ROUTE_GROUP, ROUTE_VERSION, ns, ROUTES, body, field_manager=FIELD_MANAGER)
        except calls.exception as err:
            if calls.status(err) != 404:  # 404: no HTTPRoute CRD; weights stay as configured
                raise AttachError(f"create HTTPRoute {ns}/{self.route}: HTTP "
                                  f"{calls.status(err)}") from None

    def _get_route(self) -> dict[str, Any] | None:
        calls = self.calls
        route: dict[str, Any] | None = calls.call(
            calls.custom.get_namespaced_custom_object, ROUTE_GROUP, ROUTE_VERSION,
            self.namespace, ROUTES, self.route, missing_ok=True)
        return route

    def _renew_node_leases(self) -> None:
        calls, now = self.calls, self.clock()
        if now - self._lease_renewed < NODE_LEASE_S / 4:
            return
        self._lease_renewed = now
        for gpu_type in sorted(self.cluster.gpu_total):
            name = node_name(gpu_type)
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": NODE_LEASE_S,
                             "renewTime": rfc3339(now)}}
            if calls.create(calls.coordination.create_namespaced_lease,
                            NODE_LEASE_NAMESPACE, body) is None:
                calls.call(calls.coordination.patch_namespaced_lease, name,
                           NODE_LEASE_NAMESPACE, {"spec": body["spec"]})

    # ------------------------------------------------------------------ API -> simulator
    def apply_api(self) -> list[str]:
        """Follow the API's Pods, Deployments and HTTPRoute (module docstring); returns what
        changed (for the log)."""
        calls, ns, cluster = self.calls, self.namespace, self.cluster
        changes: list[str] = []
        listed = calls.call(calls.core.list_namespaced_pod, ns, label_selector=POOL_LABEL)
        pods = sorted(listed["items"], key=lambda p: (p["metadata"]["creationTimestamp"],
                                                      p["metadata"]["name"]))
        seen: dict[str, dict[str, Any]] = {}
        for pod in pods:
            meta = pod["metadata"]
            pool = (meta.get("labels") or {}).get(POOL_LABEL)
            if pool not in self.pools:
                continue
            uid = meta["uid"]
            seen[uid] = pod
            sim = self._pairs.get(uid)
            terminating = meta.get("deletionTimestamp") is not None
            if sim is None:
                if terminating:
                    continue  # deleted before the twin paired it: publish deletes it
                self._pairs[uid] = cluster.add_pod(self.pools.index(pool))
                changes.append(f"pod {meta['name']} created ({pool})")
            elif terminating and sim.phase <= PodPhase.READY:
                cluster.remove_pod(sim)
                changes.append(f"pod {meta['name']} deleted ({pool})")
        for uid in set(self._pairs) - set(seen):  # gone from the API (a forced deletion)
            cluster.remove_pod(self._pairs.pop(uid))
            self._shown.pop(uid, None)
        self._pods = seen
        self._names = {sim.name: seen[uid]["metadata"]["name"]
                       for uid, sim in self._pairs.items() if uid in seen}
        self._follow_deployments(changes)
        self._follow_route(changes)
        return changes

    def _follow_deployments(self, changes: list[str]) -> None:
        calls, now_s, wall_s = self.calls, self.cluster.now_s, self.clock()
        names = {name: pool for pool, name in self.deployments.items()}
        for item in calls.call(calls.apps.list_namespaced_deployment, self.namespace)["items"]:
            pool = names.get(item["metadata"]["name"])
            replicas = (item.get("spec") or {}).get("replicas")
            if pool is None or not isinstance(replicas, int):
                continue
            if self._replicas.get(pool) != replicas:
                if pool in self._replicas:
                    changes.append(f"{pool}: replicas {self._replicas[pool]} -> {replicas}")
                self._replicas[pool] = replicas
                self.history.replicas[pool].append((now_s, wall_s, replicas))

    def _follow_route(self, changes: list[str]) -> None:
        changes += self._follow_weights(self._get_route(), self.backends)

    # ------------------------------------------------------------------ simulator -> API
    def api_name(self, pod: str) -> str:
        """The API's name of the simulated pod named ``pod`` (its ReplicaSet's pod name)."""
        return self._names.get(pod, pod)

    async def publish(self) -> None:
        """:meth:`publish_sync` (the twin's loop awaits its mirror)."""
        self.publish_sync()

    def publish_sync(self) -> None:
        """Bind, update and delete the API's Pods as their simulated pods are (module
        docstring), and renew the node Leases."""
        calls, ns = self.calls, self.namespace
        self._renew_node_leases()
        for uid, pod in self._pods.items():
            meta = pod["metadata"]
            sim = self._pairs.get(uid)
            if sim is None or sim.phase == PodPhase.GONE:
                calls.call(calls.core.delete_namespaced_pod, meta["name"], ns,
                           grace_period_seconds=0, missing_ok=True)
                self._pairs.pop(uid, None)
                self._shown.pop(uid, None)
                continue
            state = sim.phase.name.lower()
            if self._shown.get(uid) == state:
                continue
            if sim.phase != PodPhase.PENDING and not (pod.get("spec") or {}).get("nodeName"):
                node = node_name(self.cluster.pools[sim.pool].gpu_type)
                calls.call(calls.core.create_namespaced_binding, ns, {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
            calls.call(calls.core.patch_namespaced_pod_status, meta["name"], ns,
                       {"status": self._pod_status(pod, sim)})
            self._shown[uid] = state
        live = {p.name for p in self._pairs.values()}
        for name in set(self.pod_ips) - live:
            self.ips.release(self.pod_ips.pop(name))

    def _pod_status(self, pod: dict[str, Any], sim: Pod) -> dict[str, Any]:
        """The status a kubelet would report for ``pod`` while its simulated pod is in its
        phase (see :mod:`rlscale.twin.objects` for the table)."""
        if sim.phase == PodPhase.PENDING:
            return {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: insufficient nvidia.com/gpu"}]}
        ready = sim.phase == PodPhase.READY
        flag = "True" if ready else "False"
        ip = self._ip(sim)
        started = rfc3339(self.clock())
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        return {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
            "startTime": (pod.get("status") or {}).get("startTime") or started,
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Initialized", "status": "True"},
                           {"type": "ContainersReady", "status": flag},
                           {"type": "Ready", "status": flag}],
            "containerStatuses": [{"name": name, "image": "rlscale-twin", "imageID": "",
                                   "ready": ready, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": started}}}
                                  for name in containers]}
