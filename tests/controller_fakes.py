"""Fakes of the Kubernetes API methods the controller calls, and small builders of API objects.

The fakes hold objects in memory and return the official client's model classes
(``V1Deployment``, ``V1PodList``, ``V1Lease``, ...) for reads, as the real client does; custom
objects (the HTTPRoute) are dicts. Failures are injected per call: ``fail["method"]`` is a
list of statuses (or exceptions) raised by the next calls of that method, in order.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes.client import (
    V1Container,
    V1Deployment,
    V1DeploymentSpec,
    V1DeploymentStatus,
    V1LabelSelector,
    V1Lease,
    V1LeaseSpec,
    V1Node,
    V1NodeCondition,
    V1NodeList,
    V1NodeSpec,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodList,
    V1PodSpec,
    V1PodStatus,
    V1PodTemplateSpec,
    V1ResourceRequirements,
)
from kubernetes.client.exceptions import ApiException

from rlscale.controller.kube import KubeClients
from rlscale.metrics.snapshot import HistogramData, PodSample
from rlscale.metrics.vllm import E2E_BUCKETS_S, ITL_BUCKETS_S, QUEUE_BUCKETS_S, TTFT_BUCKETS_S

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------- failures
class Failures:
    """Statuses (int) or exceptions to raise on the next calls of each method."""

    def __init__(self) -> None:
        self.fail: dict[str, list[int | BaseException]] = {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        queue = self.fail.get(method)
        if queue:
            error = queue.pop(0)
            if isinstance(error, BaseException):
                raise error
            raise ApiException(status=error, reason=_REASONS.get(error, "Error"))

    def called(self, method: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The arguments of every call of ``method``."""
        return [(a, k) for m, a, k in self.calls if m == method]


_REASONS = {403: "Forbidden", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity",
            500: "Internal Server Error", 503: "Service Unavailable"}


# ---------------------------------------------------------------------------------- builders
def deployment(name: str, namespace: str = "llm", replicas: int = 2,
               labels: dict[str, str] | None = None, unavailable: int = 0) -> V1Deployment:
    """A Deployment selecting ``labels`` (default ``app=<name>``)."""
    labels = labels or {"app": name}
    return V1Deployment(
        metadata=V1ObjectMeta(name=name, namespace=namespace),
        spec=V1DeploymentSpec(replicas=replicas, selector=V1LabelSelector(match_labels=labels),
                              template=V1PodTemplateSpec(metadata=V1ObjectMeta(labels=labels))),
        status=V1DeploymentStatus(replicas=replicas, unavailable_replicas=unavailable))


def pod(name: str, app: str, *, namespace: str = "llm", ip: str | None = "10.0.0.1",
        phase: str = "Running", ready: bool = True, terminating: bool = False,
        node: str | None = "node-1", gpus: int = 1) -> V1Pod:
    """A pod of Deployment ``app`` (label ``app=<app>``)."""
    conditions = [V1PodCondition(type="PodScheduled", status="True" if node else "False"),
                  V1PodCondition(type="Ready", status="True" if ready else "False")]
    resources = V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)})
    return V1Pod(
        metadata=V1ObjectMeta(name=name, namespace=namespace, labels={"app": app},
                              deletion_timestamp=NOW if terminating else None),
        spec=V1PodSpec(containers=[V1Container(name="vllm", resources=resources)],
                       node_name=node),
        status=V1PodStatus(phase=phase, pod_ip=ip, conditions=conditions))


def node(name: str, product: str | None, gpus: int, *, ready: bool = True,
         cordoned: bool = False) -> V1Node:
    """A node with ``gpus`` allocatable GPUs labeled ``nvidia.com/gpu.product=<product>``."""
    labels = {"nvidia.com/gpu.product": product} if product else {}
    return V1Node(
        metadata=V1ObjectMeta(name=name, labels=labels), spec=V1NodeSpec(unschedulable=cordoned),
        status=V1NodeStatus(allocatable={"nvidia.com/gpu": str(gpus), "cpu": "32"},
                            conditions=[V1NodeCondition(type="Ready",
                                                        status="True" if ready else "False")]))


def httproute(backends: dict[str, int | None], *, rules: int = 1,
              namespace: str = "llm", name: str = "vllm") -> dict[str, Any]:
    """An HTTPRoute with ``rules`` rules, each with these backendRefs (None: no weight)."""
    refs = [{"group": "", "kind": "Service", "name": svc, "port": 8000,
             **({} if weight is None else {"weight": weight})}
            for svc, weight in backends.items()]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "spec": {"parentRefs": [{"name": "gateway"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}"}}],
                            "backendRefs": copy.deepcopy(refs)} for i in range(rules)]},
    }


def histogram(edges: tuple[float, ...], observations: list[float]) -> HistogramData:
    """A histogram holding ``observations`` (seconds)."""
    cumulative = [sum(1 for x in observations if x <= edge) for edge in edges]
    return HistogramData(edges, (*cumulative, len(observations)), float(sum(observations)))


def sample(name: str, pool: str, *, success: int = 0, running: int = 0, waiting: int = 0,
           kv: float = 0.0, ttft: list[float] | None = None, itl: list[float] | None = None,
           ready: bool = True) -> PodSample:
    """A vLLM pod sample (vLLM's bucket edges; counters as given)."""
    ttft = ttft if ttft is not None else [0.2] * success
    itl = itl if itl is not None else [0.03] * (10 * success)
    return PodSample(
        pod=name, pool=pool, num_requests_running=running, num_requests_waiting=waiting,
        kv_cache_usage_perc=kv, prompt_tokens_total=500 * success,
        generation_tokens_total=200 * success, num_preemptions_total=0,
        request_success_total=success,
        time_to_first_token_seconds=histogram(TTFT_BUCKETS_S, ttft),
        inter_token_latency_seconds=histogram(ITL_BUCKETS_S, itl),
        e2e_request_latency_seconds=histogram(E2E_BUCKETS_S, [1.0] * success),
        request_queue_time_seconds=histogram(QUEUE_BUCKETS_S, [0.01] * success), ready=ready)


def _matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    if not selector:
        return True
    labels = labels or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


# ---------------------------------------------------------------------------------- APIs
class FakeApps(Failures):
    """``AppsV1Api``: Deployments and their scale subresource."""

    def __init__(self, *deployments: V1Deployment) -> None:
        super().__init__()
        self.deployments = {(d.metadata.namespace, d.metadata.name): d for d in deployments}

    def read_namespaced_deployment(self, name: str, namespace: str, **kw: Any) -> V1Deployment:
        self._enter("read_namespaced_deployment", name, namespace, **kw)
        if (namespace, name) not in self.deployments:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.deployments[namespace, name])

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: Any,
                                          **kw: Any) -> Any:
        self._enter("patch_namespaced_deployment_scale", name, namespace, body, **kw)
        if (namespace, name) not in self.deployments:
            raise ApiException(status=404, reason="Not Found")
        self.deployments[namespace, name].spec.replicas = body["spec"]["replicas"]
        return body

    def scaled(self) -> list[tuple[str, int]]:
        """``(deployment, replicas)`` of every scale call that went through."""
        out = []
        for (name, _ns, body), _kw in self.called("patch_namespaced_deployment_scale"):
            if self.deployments.get((_ns, name)) is not None:
                out.append((name, body["spec"]["replicas"]))
        return out


class FakeCore(Failures):
    """``CoreV1Api``: pods, nodes, events."""

    def __init__(self, pods: list[V1Pod] | None = None, nodes: list[V1Node] | None = None,
                 other_pods: list[V1Pod] | None = None) -> None:
        super().__init__()
        self.pods = list(pods or [])
        self.nodes = list(nodes or [])
        self.other_pods = list(other_pods or [])
        self.events: list[dict[str, Any]] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None,
                            **kw: Any) -> V1PodList:
        self._enter("list_namespaced_pod", namespace, label_selector=label_selector, **kw)
        return V1PodList(items=[copy.deepcopy(p) for p in self.pods
                                if p.metadata.namespace == namespace
                                and _matches(p.metadata.labels, label_selector)])

    def list_node(self, label_selector: str | None = None, **kw: Any) -> V1NodeList:
        self._enter("list_node", label_selector=label_selector, **kw)
        return V1NodeList(items=[copy.deepcopy(n) for n in self.nodes if not label_selector
                                 or label_selector in (n.metadata.labels or {})])

    def list_pod_for_all_namespaces(self, field_selector: str | None = None,
                                    **kw: Any) -> V1PodList:
        self._enter("list_pod_for_all_namespaces", field_selector=field_selector, **kw)
        return V1PodList(items=[copy.deepcopy(p) for p in self.pods + self.other_pods
                                if p.status.phase not in ("Succeeded", "Failed")])

    def create_namespaced_event(self, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        self._enter("create_namespaced_event", namespace, body, **kw)
        self.events.append(body)
        return body


class FakeCustom(Failures):
    """``CustomObjectsApi`` for HTTPRoutes: merge patches with resourceVersion checks.

    ``on_get`` (if set) runs after every read: a hook for another writer sneaking in.
    """

    def __init__(self, *routes: dict[str, Any]) -> None:
        super().__init__()
        self.routes = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in routes}
        self.on_get: Callable[[dict[str, Any]], None] | None = None
        self._versions = itertools.count(2)

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                     plural: str, name: str, **kw: Any) -> dict[str, Any]:
        self._enter("get_namespaced_custom_object", group, version, namespace, plural, name,
                    **kw)
        if (namespace, name) not in self.routes:
            raise ApiException(status=404, reason="Not Found")
        out = copy.deepcopy(self.routes[namespace, name])
        if self.on_get is not None:
            self.on_get(self.routes[namespace, name])
        return out

    def bump(self, route: dict[str, Any]) -> None:
        """Mark ``route`` as changed by someone else (new resourceVersion)."""
        route["metadata"]["resourceVersion"] = str(next(self._versions))

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                       plural: str, name: str, body: dict[str, Any],
                                       **kw: Any) -> dict[str, Any]:
        self._enter("patch_namespaced_custom_object", group, version, namespace, plural, name,
                    body, **kw)
        route = self.routes[namespace, name]
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != route["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        route["spec"].update(copy.deepcopy(body.get("spec", {})))
        self.bump(route)
        return copy.deepcopy(route)


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


class FakeLeases(Failures):
    """``CoordinationV1Api`` for Leases: create (409 if present), replace (409 on a stale
    resourceVersion). ``down`` makes every call fail with 503."""

    def __init__(self) -> None:
        super().__init__()
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False
        self._versions = itertools.count(1)

    def _check(self, method: str, *args: Any) -> None:
        self._enter(method, *args)
        if self.down:
            raise ApiException(status=503, reason="Service Unavailable")

    def read_namespaced_lease(self, name: str, namespace: str, **kw: Any) -> V1Lease:
        self._check("read_namespaced_lease", name, namespace)
        body = self.leases.get((namespace, name))
        if body is None:
            raise ApiException(status=404, reason="Not Found")
        spec = body["spec"]
        return V1Lease(
            metadata=V1ObjectMeta(name=name, namespace=namespace,
                                  resource_version=body["metadata"]["resourceVersion"]),
            spec=V1LeaseSpec(holder_identity=spec.get("holderIdentity"),
                             lease_duration_seconds=spec.get("leaseDurationSeconds"),
                             acquire_time=_parse_time(spec.get("acquireTime")),
                             renew_time=_parse_time(spec.get("renewTime")),
                             lease_transitions=spec.get("leaseTransitions")))

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any],
                                **kw: Any) -> dict[str, Any]:
        self._check("create_namespaced_lease", namespace, body)
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[key] = stored
        return stored

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any],
                                 **kw: Any) -> dict[str, Any]:
        self._check("replace_namespaced_lease", name, namespace, body)
        current = self.leases.get((namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[namespace, name] = stored
        return stored

    def holder(self, name: str = "rlscale", namespace: str = "llm") -> str | None:
        """Who holds the Lease now."""
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease["spec"].get("holderIdentity")


def clients(apps: FakeApps | None = None, core: FakeCore | None = None,
            custom: FakeCustom | None = None, leases: FakeLeases | None = None) -> KubeClients:
    """:class:`KubeClients` of fakes (empty ones where not given)."""
    return KubeClients(apps=apps or FakeApps(), core=core or FakeCore(),
                       custom=custom or FakeCustom(), coordination=leases or FakeLeases())
