"""The controller against an in-memory Kubernetes API over real HTTP (kmock).

The official ``kubernetes`` client talks HTTP to kmock's emulator, so request paths, patch
content types, JSON (de)serialization and error statuses are the real ones. kmock's emulator
lacks resourceVersions, conflicts, PUT, label selectors and the ``Scale`` kind; the twin's thin
subclass :class:`rlscale.twin.kubeapi.Kube` adds them. kmock is async: the (synchronous) client
runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

kmock = pytest.importorskip("kmock")
pytest.importorskip("pytest_asyncio")

from controller_fakes import sample  # noqa: E402 (after the skips)
from kubernetes import client  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from rlscale.controller.actuator import KubernetesActuator, RetryPolicy, weights_patch  # noqa: E402
from rlscale.controller.cluster_state import ClusterReader  # noqa: E402
from rlscale.controller.config import parse_config  # noqa: E402
from rlscale.controller.kube import KubeClients  # noqa: E402
from rlscale.controller.leader import LeaderElector  # noqa: E402
from rlscale.controller.loop import ControlLoop  # noqa: E402
from rlscale.controller.observability import EventRecorder  # noqa: E402
from rlscale.controller.pod_scrape import PodScrapeSource  # noqa: E402
from rlscale.controller.policies import build_policy_setup  # noqa: E402
from rlscale.metrics.exposition import render_pod_metrics  # noqa: E402
from rlscale.twin.kubeapi import (  # noqa: E402
    DEPLOYMENTS,
    EVENTS,
    HTTPROUTES,
    LEASES,
    NODES,
    PODS,
    Kube,
)

ROUTES = HTTPROUTES

T = TypeVar("T")


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
                             identity=identity, clock=lambda: now[0], wall=lambda: now[0])

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
    # the static policy's configured replicas x capacity_rps (3 x 12 : 1 x 5), per mille;
    # not the ready replicas (2 x 12 : 1 x 5 would be 828 : 172)
    assert [w["weight"] for w in weights] == [878, 122]
    events = [obj.raw for key, obj in kmock.objects.items() if key[0] == EVENTS]
    assert sorted(e["reason"] for e in events) == ["ScaledUp", "WeightsChanged"]
