"""The Kubernetes API clients the controller uses, and how their errors are classified.

The official ``kubernetes`` client (the ``controller`` extra) is used through four API groups:
``AppsV1Api`` (Deployments and their ``scale`` subresource), ``CoreV1Api`` (pods, nodes,
events), ``CustomObjectsApi`` (the Gateway API HTTPRoute) and ``CoordinationV1Api`` (the
leader-election Lease). Tests pass fakes with the same methods.

RBAC the controller needs is :data:`API_CALLS`, the single source of truth (the manifests in
``deploy/`` are checked against it by ``tests/test_deploy.py``; :func:`rbac_rules` gives the
rules of one scope): ``apps/deployments`` get; ``apps/deployments/scale`` patch; ``pods`` list;
``events`` create; ``gateway.networking.k8s.io/httproutes`` get, patch;
``autoscaling/horizontalpodautoscalers`` list (in the pools' and the route's namespaces);
``coordination.k8s.io/leases`` get, create, update (in the Lease's namespace); ``nodes`` list
(cluster-wide, only to count free GPUs: without it the free GPUs are unknown and the loop
estimates them from the inventory); ``pods`` list in all namespaces only with
``gpus.pod_scope: cluster``.
No watch, no delete, no wildcard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RbacScope = Literal["pools", "lease", "cluster", "cluster-pods"]
"""Where a permission is needed: ``pools`` — every namespace holding a pool's Deployment or the
HTTPRoute (a Role there); ``lease`` — the leader-election Lease's namespace (a Role there);
``cluster`` — cluster-wide (a ClusterRole); ``cluster-pods`` — cluster-wide, only when the
config asks for it (``gpus.pod_scope: cluster``)."""


@dataclass(frozen=True)
class ApiCall:
    """One Kubernetes API call the controller makes, as RBAC sees it.

    Attributes:
        api_group: ``""`` for the core group.
        resource: the plural resource, ``/subresource`` appended (``deployments/scale``).
        verb: the RBAC verb (``get``, ``list``, ``patch``, ``create``, ``update``).
        scope: see :data:`RbacScope`.
    """

    api_group: str
    resource: str
    verb: str
    scope: RbacScope


API_CALLS: dict[str, ApiCall] = {
    # cluster_state.ClusterReader
    "read_namespaced_deployment": ApiCall("apps", "deployments", "get", "pools"),
    "list_namespaced_pod": ApiCall("", "pods", "list", "pools"),
    "get_namespaced_custom_object": ApiCall("gateway.networking.k8s.io", "httproutes", "get",
                                            "pools"),
    "list_node": ApiCall("", "nodes", "list", "cluster"),
    "list_pod_for_all_namespaces": ApiCall("", "pods", "list", "cluster-pods"),
    # cli (at start-up: a Deployment an HPA scales is not scaled by the controller)
    "list_namespaced_horizontal_pod_autoscaler": ApiCall(
        "autoscaling", "horizontalpodautoscalers", "list", "pools"),
    # actuator.KubernetesActuator (act mode only)
    "patch_namespaced_deployment_scale": ApiCall("apps", "deployments/scale", "patch", "pools"),
    "patch_namespaced_custom_object": ApiCall("gateway.networking.k8s.io", "httproutes",
                                              "patch", "pools"),
    # observability.EventRecorder (on the Deployment or HTTPRoute written)
    "create_namespaced_event": ApiCall("", "events", "create", "pools"),
    # leader.LeaderElector
    "read_namespaced_lease": ApiCall("coordination.k8s.io", "leases", "get", "lease"),
    "create_namespaced_lease": ApiCall("coordination.k8s.io", "leases", "create", "lease"),
    "replace_namespaced_lease": ApiCall("coordination.k8s.io", "leases", "update", "lease"),
}
"""Every ``kubernetes.client`` method the controller calls -> what RBAC must allow. The only
custom objects read or patched are Gateway API HTTPRoutes."""


def rbac_rules(scope: RbacScope) -> list[dict[str, list[str]]]:
    """The RBAC ``rules`` (``apiGroups``, ``resources``, ``verbs``) of ``scope``: one rule per
    API group and resource, verbs sorted, rules sorted by group and resource."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for call in API_CALLS.values():
        if call.scope == scope:
            verbs.setdefault((call.api_group, call.resource), set()).add(call.verb)
    return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(names)}
            for (group, resource), names in sorted(verbs.items())]

TEMPORARY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: conflicts (re-read, re-apply), throttling, server errors."""


@dataclass(frozen=True)
class KubeClients:
    """The API objects (``kubernetes.client.*Api`` or fakes with the same methods)."""

    apps: Any
    core: Any
    custom: Any
    coordination: Any
    autoscaling: Any = None
    """``AutoscalingV2Api`` (HPAs, read at start-up); None: not checked."""


def load_clients(kubeconfig: str | None = None) -> KubeClients:
    """Clients for the in-cluster service account, or for ``kubeconfig`` (a path) when given
    or when not running in a pod (then ``$KUBECONFIG`` or ``~/.kube/config``)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped in some client versions
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    api = client.ApiClient()
    return KubeClients(apps=client.AppsV1Api(api), core=client.CoreV1Api(api),
                       custom=client.CustomObjectsApi(api),
                       coordination=client.CoordinationV1Api(api),
                       autoscaling=client.AutoscalingV2Api(api))


def api_status(err: BaseException) -> int | None:
    """The HTTP status of a Kubernetes API error (``ApiException.status``), 0 for a
    connection-level failure, or None when ``err`` is not an API or connection error."""
    status = getattr(err, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    if isinstance(err, (ConnectionError, TimeoutError, OSError)):
        return 0
    module = type(err).__module__
    if module.startswith(("urllib3", "kubernetes")):
        return 0
    return None


def is_temporary(err: BaseException) -> bool:
    """Whether an API call that raised ``err`` may succeed if retried."""
    status = api_status(err)
    return status is not None and (status == 0 or status in TEMPORARY_STATUSES)


def describe(err: BaseException) -> str:
    """A one-line description of an API error (status, reason; no response body dump)."""
    status = api_status(err)
    reason = getattr(err, "reason", None)
    if status:
        return f"HTTP {status}{f' {reason}' if reason else ''}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def get(obj: Any, *path: str) -> Any:
    """Follow attribute names (client models) or keys (dicts) along ``path``; None if absent.

    The API returns models (``pod.status.pod_ip``) and custom objects as dicts
    (``route["spec"]["rules"]``); this reads both.
    """
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj
