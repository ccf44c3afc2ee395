"""The Kubernetes API clients the controller uses, and how their errors are classified.

The official ``kubernetes`` client (the ``controller`` extra) is used through four API groups:
``AppsV1Api`` (Deployments and their ``scale`` subresource), ``CoreV1Api`` (pods, nodes,
events), ``CustomObjectsApi`` (the Gateway API HTTPRoute) and ``CoordinationV1Api`` (the
leader-election Lease). Tests pass fakes with the same methods.

RBAC the controller needs: ``apps/deployments`` get; ``apps/deployments/scale`` patch;
``pods`` list (the pools' namespaces and, for free GPUs, all namespaces); ``nodes`` list;
``events`` create; ``gateway.networking.k8s.io/httproutes`` get, patch;
``coordination.k8s.io/leases`` get, create, update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEMPORARY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: conflicts (re-read, re-apply), throttling, server errors."""


@dataclass(frozen=True)
class KubeClients:
    """The API objects (``kubernetes.client.*Api`` or fakes with the same methods)."""

    apps: Any
    core: Any
    custom: Any
    coordination: Any


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
                       coordination=client.CoordinationV1Api(api))


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
