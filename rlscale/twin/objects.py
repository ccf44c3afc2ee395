"""The Kubernetes objects that stand for a simulated cluster, built as plain dicts.

Per pool (named like its Deployment): a Deployment selecting ``app=<pool>``, a Service of the
same name (the HTTPRoute's backendRef), and one Pod per simulated pod; one HTTPRoute routing
across the pools' Services by weight; one Node per GPU type, labelled
``nvidia.com/gpu.product=<GPU type>`` with the inventory as allocatable ``nvidia.com/gpu``.
A simulated pod maps to a Pod as kubelet would show it:

==========  ==========  =========  =====  ======  ====================================
simulator   phase       scheduled  Ready  pod IP  other
==========  ==========  =========  =====  ======  ====================================
PENDING     Pending     no         no     none    ``PodScheduled=False``, Unschedulable
STARTING    Running     yes        no     yes     cold start: no ``/metrics`` yet
READY       Running     yes        yes    yes     serves ``/metrics``
DRAINING    Running     yes        no     yes     ``deletionTimestamp`` set (terminating)
==========  ==========  =========  =====  ======  ====================================

Every function here is pure: same inputs, same dict.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlscale.weights import integer_weights

GPU_LABEL = "nvidia.com/gpu.product"
"""The node label naming the GPU model (NVIDIA GPU feature discovery)."""
GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource a pod requests per GPU."""
IMAGE = "vllm/vllm-openai:latest"
"""The container image the objects name (nothing runs it: the simulator stands in)."""


@dataclass(frozen=True)
class PodView:
    """What the API shows of one simulated pod.

    Attributes:
        name / pool: the pod and its pool (Deployment).
        state: ``pending``, ``starting``, ``ready`` or ``draining``.
        ip: the pod IP (a loopback address) once scheduled; node: its node.
        gpus: GPUs requested; created: creation time (RFC 3339);
        deleted: when draining began (RFC 3339), else None;
        grace_s: the termination grace period (seconds).
    """

    name: str
    pool: str
    state: str
    ip: str | None
    node: str | None
    gpus: int
    created: str
    deleted: str | None = None
    grace_s: int = 600


def labels_of(pool: str) -> dict[str, str]:
    """The labels of a pool's pods (the Deployment's selector is ``app=<pool>``)."""
    return {"app": pool, "app.kubernetes.io/name": "vllm", "rlscale.io/pool": pool}


def namespace_object(name: str) -> dict[str, Any]:
    """A Namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def node_object(name: str, gpu_type: str, gpus: int) -> dict[str, Any]:
    """A ready, schedulable GPU node with ``gpus`` allocatable GPUs of ``gpu_type``."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                GPU_LABEL: gpu_type, "kubernetes.io/hostname": name,
                "nvidia.com/gpu.count": str(gpus)}},
            "spec": {},
            "status": {"capacity": {GPU_RESOURCE: str(gpus)},
                       "allocatable": {GPU_RESOURCE: str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady"}],
                       "nodeInfo": {
                           "kubeletVersion": "v1.30.0-rlscale-twin", "kubeProxyVersion": "",
                           "architecture": "amd64", "operatingSystem": "linux",
                           "osImage": "rlscale twin (simulated)", "kernelVersion": "",
                           "containerRuntimeVersion": "", "machineID": name,
                           "systemUUID": name, "bootID": name}}}


def _container(model: str, port: int, gpus: int) -> dict[str, Any]:
    return {"name": "vllm", "image": IMAGE,
            "args": ["--model", model, "--port", str(port)],
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "resources": {"requests": {GPU_RESOURCE: str(gpus)},
                          "limits": {GPU_RESOURCE: str(gpus)}},
            "readinessProbe": {"httpGet": {"path": "/health", "port": port},
                               "periodSeconds": 5, "timeoutSeconds": 1,
                               "successThreshold": 1, "failureThreshold": 3}}


def deployment_object(pool: str, namespace: str, replicas: int, *, model: str, port: int,
                      gpus: int, grace_s: int) -> dict[str, Any]:
    """A pool's Deployment (no status yet: see :func:`deployment_status`)."""
    labels = labels_of(pool)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": pool, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": pool}},
                     "strategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [_container(model, port, gpus)],
                                           "terminationGracePeriodSeconds": grace_s}}}}


def deployment_status(desired: int, pods: list[PodView], generation: int) -> dict[str, Any]:
    """A Deployment's ``status`` from its pods: ``replicas`` counts pods that are not
    terminating, ``readyReplicas`` and ``availableReplicas`` the ready ones."""
    live = [p for p in pods if p.state != "draining"]
    ready = sum(p.state == "ready" for p in live)
    status: dict[str, Any] = {
        "observedGeneration": generation, "replicas": len(live), "updatedReplicas": len(live),
        "readyReplicas": ready, "availableReplicas": ready,
        "conditions": [{"type": "Available",
                        "status": "True" if ready >= min(desired, 1) else "False"}]}
    if len(live) - ready > 0:
        status["unavailableReplicas"] = len(live) - ready
    return status


def service_object(pool: str, namespace: str, port: int) -> dict[str, Any]:
    """The Service in front of a pool (the HTTPRoute's backendRef)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": pool, "namespace": namespace, "labels": labels_of(pool)},
            "spec": {"selector": {"app": pool}, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def http_route_object(name: str, namespace: str, weights: Mapping[str, int],
                      port: int) -> dict[str, Any]:
    """A Gateway API HTTPRoute splitting ``/`` across Services by integer weight."""
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": "inference-gateway"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"name": service, "port": port,
                                                 "weight": int(weight)}
                                                for service, weight in weights.items()]}]}}


def route_pool_weights(route: Mapping[str, Any], pools: list[str],
                       backends: Mapping[str, str] | None = None) -> dict[str, float] | None:
    """Each pool's weight in the first rule naming one of the pools' Services (a pool's
    weight sums its backendRefs'; an absent ``weight`` is 1, as in the Gateway API), or None
    when no rule names any. ``backends`` maps a Service to its pool (default: the Service
    is named after the pool)."""
    services = dict(backends) if backends is not None else {p: p for p in pools}
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = [r for r in rule.get("backendRefs") or [] if r.get("name") in services]
        if refs:
            weights = dict.fromkeys(pools, 0.0)
            for ref in refs:
                weight = ref.get("weight", 1)
                weights[services[ref["name"]]] += float(1 if weight is None else weight)
            return weights
    return None


def route_weights(weights: Mapping[str, float], total: int = 1000) -> dict[str, int]:
    """Pool weights as the HTTPRoute's integer weights summing to ``total``."""
    return dict(zip(weights, integer_weights(list(weights.values()), total), strict=True))


def pod_object(view: PodView, namespace: str, *, model: str, port: int) -> dict[str, Any]:
    """The Pod of one simulated pod (see the module docstring's table)."""
    metadata: dict[str, Any] = {
        "name": view.name, "namespace": namespace, "labels": labels_of(view.pool),
        "creationTimestamp": view.created,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": view.pool, "controller": True,
                             "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                                   f"{view.pool}.{namespace}"))}]}
    if view.deleted is not None:
        metadata["deletionTimestamp"] = view.deleted
        metadata["deletionGracePeriodSeconds"] = view.grace_s
    spec: dict[str, Any] = {"containers": [_container(model, port, view.gpus)],
                            "terminationGracePeriodSeconds": view.grace_s}
    if view.state == "pending":
        status: dict[str, Any] = {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": f"0 nodes are available: insufficient {GPU_RESOURCE}"}]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
                "status": status}
    spec["nodeName"] = view.node
    ready = view.state == "ready"
    flag = "True" if ready else "False"
    status = {
        "phase": "Running", "podIP": view.ip, "podIPs": [{"ip": view.ip}],
        "hostIP": view.ip, "startTime": view.created,
        "conditions": [{"type": "PodScheduled", "status": "True"},
                       {"type": "Initialized", "status": "True"},
                       {"type": "ContainersReady", "status": flag},
                       {"type": "Ready", "status": flag}],
        "containerStatuses": [{"name": "vllm", "image": IMAGE, "imageID": IMAGE, "ready": ready,
                               "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": view.created}}}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status}
