"""The controller against an in-memory Kubernetes API over real HTTP (kmock).

The official ``kubernetes`` client talks HTTP to kmock's emulator, so request paths, patch
content types, JSON (de)serialization and error statuses are the real ones. kmock's emulator
lacks resourceVersions, conflicts, PUT, label selectors and the ``Scale`` kind; the thin
subclass :class:`Kube` adds them. kmock is async: the (synchronous) client runs in a thread.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

kmock = pytest.importorskip("kmock")
pytest.importorskip("pytest_asyncio")

import aiohttp.web  # noqa: E402 (after the skips)
import attrs  # noqa: E402
from controller_fakes import sample  # noqa: E402
from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from rlscale.controller.actuator import KubernetesActuator, RetryPolicy, weights_patch  # noqa: E402
from rlscale.controller.cluster_state import ClusterReader  # noqa: E402
from rlscale.controller.config import parse_config  # noqa: E402
from rlscale.controller.kube import KubeClients  # noqa: E402
from rlscale.controller.leader import LeaderElector  # noqa: E402
from rlscale.controller.loop import ControlLoop  # noqa: E402
from rlscale.controller.observability import EventRecorder  # noqa: E402
from rlscale.controller.policies import build_policy_setup  # noqa: E402
from rlscale.controller.sources import PodScrapeSource  # noqa: E402
from rlscale.metrics.exposition import render_pod_metrics  # noqa: E402

T = TypeVar("T")

DEPLOYMENTS = kmock.resource("apps/v1/deployments")
PODS = kmock.resource("v1/pods")
NODES = kmock.resource("v1/nodes")
EVENTS = kmock.resource("v1/events")
ROUTES = kmock.resource("gateway.networking.k8s.io/v1/httproutes")
LEASES = kmock.resource("coordination.k8s.io/v1/leases")


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {},
                                      "status": "Failure", "code": code, "reason": reason,
                                      "message": message}, status=code)


def _selected(labels: dict[str, str], selector: str) -> bool:
    """Equality (``k=v``) and existence (``k``) terms of a label selector."""
    for term in selector.split(","):
        key, equals, value = term.partition("=")
        if (labels.get(key) != value) if equals else (key not in labels):
            return False
    return True


@attrs.define(kw_only=True)
class Kube(kmock.KubernetesEmulator):
    """kmock's emulator plus resourceVersion conflicts, PUT, label selectors and Scale."""

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(100), init=False)

    def _next(self) -> str:
        return str(next(self._versions))

    async def _handle(self, request: Any) -> Any:
        if request.resource is None:
            return await super()._handle(request)
        key = (request.resource, request.namespace, request.name)
        method = str(request.method).upper().rsplit(".", 1)[-1]
        stored = self.objects[key] if request.name and key in self.objects else None
        if stored is not None and stored.deleted:
            stored = None
        data = request.data if isinstance(request.data, dict) else {}
        if request.subresource == "scale":
            if stored is None:
                return _status(404, "NotFound", f"deployments {request.name} not found")
            if method == "PATCH":
                stored.patch({"spec": {"replicas": data["spec"]["replicas"]},
                              "metadata": {"resourceVersion": self._next()}})
            return aiohttp.web.json_response(self._scale(stored.raw))
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if method in ("PUT", "PATCH") and request.name:
            if stored is None:
                return _status(404, "NotFound", f"{request.name} not found")
            if wanted is not None and wanted != stored.raw["metadata"].get("resourceVersion"):
                return _status(409, "Conflict", "the object has been modified")
            if method == "PUT":
                stored.create({**data, "metadata": {**data["metadata"],
                                                    "resourceVersion": self._next()}})
                return aiohttp.web.json_response(stored.raw)
        if method in ("PATCH", "POST") and data:
            data.setdefault("metadata", {})["resourceVersion"] = self._next()
        return await super()._handle(request)

    async def _serve_list(self, request: Any) -> Any:
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [item for item in payload["items"] if _selected(
                item.get("metadata", {}).get("labels") or {}, selector)]
        return payload

    @staticmethod
    def _scale(deployment: dict[str, Any]) -> dict[str, Any]:
        meta, spec = deployment["metadata"], deployment["spec"]
        labels = spec["selector"]["matchLabels"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta.get("resourceVersion", "1")},
                "spec": {"replicas": spec["replicas"]},
                "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}


def _seed(k: Any) -> None:
    for name, replicas in (("vllm-a", 2), ("vllm-b", 1)):
        k.objects[DEPLOYMENTS, "llm", name] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "llm", "resourceVersion": "1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}}},
            "status": {"replicas": replicas, "readyReplicas": replicas}}
    for name, app, ip, node in (("a-0", "vllm-a", "10.0.0.1", "n1"),
                                ("a-1", "vllm-a", "10.0.0.2", "n1"),
                                ("b-0", "vllm-b", "10.0.0.3", "n2")):
        k.objects[PODS, "llm", name] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "llm", "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [
                {"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}}
    for name, product in (("n1", "H100"), ("n2", "A100")):
        k.objects[NODES, None, name] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product}},
            "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": "8"},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}
    k.objects[ROUTES, "llm", "vllm"] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "vllm", "namespace": "llm", "resourceVersion": "1"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": "svc-a", "port": 8000, "weight": 1},
            {"name": "svc-b", "port": 8000, "weight": 1}]}]}}
    k.resources[EVENTS] = kmock.ResourceInfo(kind="Event", namespaced=True)
    k.resources[LEASES] = kmock.ResourceInfo(kind="Lease", namespaced=True)


def _clients(k: Any) -> KubeClients:
    api = client.ApiClient(client.Configuration(host=str(k.url).rstrip("/")))
    return KubeClients(apps=client.AppsV1Api(api), core=client.CoreV1Api(api),
                       custom=client.CustomObjectsApi(api),
                       coordination=client.CoordinationV1Api(api))


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


CONFIG = {
    "interval_s": 30, "slo": {"ttft_s": 2.0, "itl_s": 0.15},
    "pools": [
        {"name": "a", "namespace": "llm", "deployment": "vllm-a", "min_replicas": 1,
         "max_replicas": 4, "gpu_type": "H100", "gpus_per_replica": 1, "max_num_seqs": 256,
         "price_per_replica_hour": 6.88, "capacity_rps": 12.0, "gpu_inventory": 8},
        {"name": "b", "namespace": "llm", "deployment": "vllm-b", "min_replicas": 0,
         "max_replicas": 3, "gpu_type": "A100", "gpus_per_replica": 1, "max_num_seqs": 256,
         "price_per_replica_hour": 3.43, "capacity_rps": 5.0, "gpu_inventory": 8}],
    "httproute": {"namespace": "llm", "name": "vllm", "backends": {"svc-a": "a", "svc-b": "b"}},
    "policy": {"heuristic": "static", "knobs": {"replicas": [3, 1]}},
    "leader_election": {"enabled": False},
}


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_read_scale_and_route_over_http(kmock: Any) -> None:
    _seed(kmock)
    kube = _clients(kmock)
    config = parse_config(CONFIG)
    state = await _run(ClusterReader(kube, route=config.httproute, gpus=config.gpus).read,
                       config.pools)
    assert state.problems == ()
    assert {n: (s.desired, s.ready, [p.name for p in s.pods]) for n, s in state.pools.items()} == {
        "a": (2, 2, ["a-0", "a-1"]), "b": (1, 1, ["b-0"])}
    assert state.weights == {"a": 1.0, "b": 1.0}
    assert state.free_gpus == {"H100": 6, "A100": 7}

    actuator = KubernetesActuator(kube, retry=RetryPolicy(attempts=3), sleep=lambda s: None)
    await _run(actuator.scale, "llm", "vllm-a", 3)
    assert kmock.objects[DEPLOYMENTS, "llm", "vllm-a"]["spec"]["replicas"] == 3
    await _run(actuator.set_weights, config.httproute, {"svc-a": 750, "svc-b": 250})
    route = kmock.objects[ROUTES, "llm", "vllm"].raw
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [750, 250]
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    # a patch made with a stale resourceVersion is refused with 409 over HTTP
    stale = weights_patch({**route, "metadata": {**route["metadata"], "resourceVersion": "1"}},
                          {"svc-a": 1})
    with pytest.raises(ApiException) as caught:
        await _run(kube.custom.patch_namespaced_custom_object, "gateway.networking.k8s.io",
                   "v1", "llm", "httproutes", "vllm", stale,
                   _content_type="application/merge-patch+json")
    assert caught.value.status == 409
    with pytest.raises(Exception, match="HTTP 404"):
        await _run(actuator.scale, "llm", "missing", 1)


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_leader_election_over_http(kmock: Any) -> None:
    _seed(kmock)
    kube = _clients(kmock)
    now = [1_700_000_000.0]

    def elector(identity: str) -> LeaderElector:
        return LeaderElector(kube.coordination, name="rlscale", namespace="llm",
                             identity=identity, now=lambda: now[0])

    a, b = elector("a"), elector("b")
    assert await _run(a.tick)
    assert not await _run(b.tick)
    assert kmock.objects[LEASES, "llm", "rlscale"]["spec"]["holderIdentity"] == "a"
    for _ in range(9):  # a stops renewing; b takes over once the lease expired
        now[0] += 2.0
        await _run(b.tick)
    assert b.is_leader
    lease = kmock.objects[LEASES, "llm", "rlscale"].raw
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    now[0] += 2.0
    assert not await _run(a.tick)  # a sees b's lease
    assert a.is_leader is False


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_the_control_loop_against_the_api(kmock: Any) -> None:
    _seed(kmock)
    kube = _clients(kmock)
    config = parse_config(CONFIG)
    pages = {"10.0.0.1": sample("a-0", "a", success=10), "10.0.0.2": sample("a-1", "a"),
             "10.0.0.3": sample("b-0", "b", success=3)}

    def fetch(url: str, timeout_s: float) -> str:
        ip = url.split("//", 1)[1].split(":", 1)[0]
        return render_pod_metrics(pages[ip], model_name="llama", spelling="underscore")

    source = PodScrapeSource(ClusterReader(kube, route=config.httproute, gpus=config.gpus),
                             fetch=fetch)
    loop = ControlLoop(config, source, build_policy_setup(config),
                       actuator=KubernetesActuator(kube, sleep=lambda s: None),
                       events=EventRecorder(kube.core, instance="c-0", now=lambda: 0.0))
    try:
        record = await _run(loop.run_once, 1_700_000_000.0)
    finally:
        source.close()
    assert record.reason == "ScaleUp"
    assert record.errors == ()
    assert record.replicas == {"a": 3, "b": 1}
    assert kmock.objects[DEPLOYMENTS, "llm", "vllm-a"]["spec"]["replicas"] == 3
    weights = kmock.objects[ROUTES, "llm", "vllm"]["spec"]["rules"][0]["backendRefs"]
    assert [w["weight"] for w in weights] == [878, 122]  # ready replicas x capacity_rps
    events = [obj.raw for key, obj in kmock.objects.items() if key[0] == EVENTS]
    assert sorted(e["reason"] for e in events) == ["ScaledUp", "WeightsChanged"]
