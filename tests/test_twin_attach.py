"""The attached twin's mirror (``rlscale twin --kubeconfig``) against an in-memory fake of the
few API calls it makes: what a ReplicaSet controller does to Pods reaches the simulator, and
what the simulator does to pods reaches the Pods (binding, readiness, deletion). The real API
server runs in test_e2e_kube.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

pytest.importorskip("kubernetes")
pytest.importorskip("pytest_asyncio")

from rlscale.sim.cluster import Cluster
from rlscale.sim.pod import PodPhase
from rlscale.sim.scenario import load_scenario
from rlscale.twin.attach import AttachedMirror, AttachError, KubeCalls

STEP = "tests/data/twin-step.yaml"
NS = "llm"


class FakeApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
        self.reason = "fake"
        self.body = ""


class Response:
    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body).encode()


class FakeApi:
    """The methods of CoreV1Api, AppsV1Api, CustomObjectsApi and CoordinationV1Api the mirror
    calls, over dicts; every call is logged as (method name, object name)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []
        self.route_crd = True
        self._uid = 0

    def _put(self, kind: str, body: dict[str, Any]) -> Response:
        name = body["metadata"]["name"]
        if (kind, name) in self.objects:
            raise FakeApiError(409)
        self.objects[kind, name] = body
        return Response(body)

    def _items(self, kind: str) -> Response:
        return Response({"items": [o for (k, _), o in sorted(self.objects.items()) if k == kind]})

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_kwargs: Any) -> Response:
            self.log.append((method, str(args[0]) if args else ""))
            return self.handle(method, args)
        call.__name__ = method
        return call

    def handle(self, method: str, args: tuple[Any, ...]) -> Response:
        if method in ("create_namespace", "create_node"):
            return self._put(method[7:], args[0])
        if method.startswith("create_namespaced_") and method != "create_namespaced_binding":
            if method == "create_namespaced_custom_object":
                if not self.route_crd:
                    raise FakeApiError(404)
                return self._put("httproute", args[4])
            return self._put(method[18:], args[1])
        if method.startswith("list_namespaced_"):
            return self._items(method[16:])
        if method == "get_namespaced_custom_object":
            route = self.objects.get(("httproute", args[4]))
            if route is None:
                raise FakeApiError(404)
            return Response(route)
        if method == "create_namespaced_binding":
            pod = self.objects["pod", args[1]["metadata"]["name"]]
            pod["spec"]["nodeName"] = args[1]["target"]["name"]
            return Response({})
        if method == "patch_namespaced_pod_status":
            pod = self.objects["pod", args[0]]
            pod["status"] = args[2]["status"]
            return Response(pod)
        if method == "delete_namespaced_pod":
            self.objects.pop(("pod", args[0]), None)
            return Response({})
        if method in ("patch_node_status", "patch_namespaced_lease"):
            return Response({})
        raise AssertionError(f"unexpected call {method}")

    # what a ReplicaSet controller would do
    def make_pod(self, pool: str) -> str:
        self._uid += 1
        name = f"vllm-{pool}-{self._uid}"
        self.objects["pod", name] = {
            "metadata": {"name": name, "uid": f"uid-{self._uid}",
                         "labels": {"rlscale.io/pool": pool},
                         "creationTimestamp": f"2026-01-01T00:00:{self._uid:02d}Z"},
            "spec": {"containers": [{"name": "vllm"}]}, "status": {}}
        return name

    def delete_gracefully(self, name: str) -> None:
        pod = self.objects["pod", name]
        if pod["spec"].get("nodeName"):
            pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:10:00Z"
        else:
            del self.objects["pod", name]  # an unbound pod goes at once


def fake_calls(api: FakeApi) -> KubeCalls:
    calls = KubeCalls.__new__(KubeCalls)
    calls.core = calls.apps = calls.custom = calls.coordination = api
    calls.exception = FakeApiError
    calls.unreachable = (ConnectionError,)
    return calls


def mirror_on(api: FakeApi) -> AttachedMirror:
    scenario = load_scenario(STEP)
    workload = scenario.build_workload(np.random.default_rng(0))
    cluster = Cluster(scenario.cluster, workload, np.random.default_rng(0))
    mirror = AttachedMirror(fake_calls(api), cluster, namespace=NS, route="vllm", port=8000,
                            model_names={})
    return mirror


def pod_state(api: FakeApi, name: str) -> tuple[str | None, str | None, str | None]:
    pod = api.objects["pod", name]
    ready = next((c["status"] for c in pod["status"].get("conditions", [])
                  if c["type"] == "Ready"), None)
    return pod["spec"].get("nodeName"), pod["status"].get("phase"), ready


@pytest.mark.asyncio
async def test_seed_creates_nodes_pools_and_the_route_where_missing() -> None:
    api = FakeApi()
    mirror = mirror_on(api)
    assert sum(len(p) for p in mirror.cluster.pool_pods) == 0  # the API's Pods drive it
    await mirror.seed()
    kinds = {k for k, _ in api.objects}
    assert {"namespace", "node", "deployment", "service", "httproute", "lease"} <= kinds
    assert mirror.deployments == {p: p for p in mirror.pools}
    assert mirror.backends == {p: p for p in mirror.pools}
    assert set(mirror.weights) == set(mirror.pools)
    assert sum(mirror.weights.values()) == 1000  # integer weights, as the twin writes them


@pytest.mark.asyncio
async def test_existing_deployments_and_services_are_found_by_the_pool_label() -> None:
    api = FakeApi()
    for pool in ("llama3-8b-h100", "llama3-8b-a100", "llama3-8b-l4"):
        api.objects["deployment", f"vllm-{pool}"] = {
            "metadata": {"name": f"vllm-{pool}"}, "spec": {"replicas": 1, "template": {
                "metadata": {"labels": {"rlscale.io/pool": pool}}}}}
        api.objects["service", f"svc-{pool}"] = {
            "metadata": {"name": f"svc-{pool}"}, "spec": {"selector": {"rlscale.io/pool": pool}}}
    api.objects["httproute", "vllm"] = {"metadata": {"name": "vllm"}, "spec": {"rules": [{
        "backendRefs": [{"name": "svc-llama3-8b-h100", "weight": 3},
                        {"name": "svc-llama3-8b-a100"}, {"name": "elsewhere", "weight": 9}]}]}}
    mirror = mirror_on(api)
    await mirror.seed()
    assert mirror.deployments["llama3-8b-h100"] == "vllm-llama3-8b-h100"
    assert not [k for k in api.objects if k[0] == "deployment" and not k[1].startswith("vllm")]
    assert mirror.weights == {"llama3-8b-h100": 3.0, "llama3-8b-a100": 1.0, "llama3-8b-l4": 0.0}


@pytest.mark.asyncio
async def test_a_pod_is_bound_made_ready_drained_and_deleted_as_the_simulator_says() -> None:
    api = FakeApi()
    mirror = mirror_on(api)
    await mirror.seed()
    name = api.make_pod("llama3-8b-h100")
    assert mirror.apply_api() == [f"pod {name} created (llama3-8b-h100)"]
    await mirror.publish()
    node, phase, ready = pod_state(api, name)
    assert node == "gpu-h100-sxm5-80gb"
    assert (phase, ready) == ("Running", "False")  # cold-starting
    ip = api.objects["pod", name]["status"]["podIP"]
    assert ip.startswith("127.0.")
    mirror.cluster.run_until(60.0)  # cold starts are 10-40 s
    mirror.apply_api()
    await mirror.publish()
    assert pod_state(api, name) == (node, "Running", "True")
    # served under the API's pod name (the file_sd ``pod`` label Prometheus matches on)
    assert mirror.serving_pods() == {name: ("llama3-8b-h100", ip)}
    sim_name = mirror.cluster.pool_pods[0][0].name
    assert sim_name != name
    assert mirror.api_name(sim_name) == name
    api.delete_gracefully(name)  # the ReplicaSet scales down
    mirror.apply_api()
    await mirror.publish()
    sim = next(p for p in mirror.cluster.pool_pods[0])
    assert sim.phase in (PodPhase.DRAINING, PodPhase.GONE)
    mirror.cluster.run_until(mirror.cluster.now_s + 200)  # past drain_timeout_s
    mirror.apply_api()
    await mirror.publish()
    assert ("pod", name) not in api.objects
    assert mirror.cluster.desired[0] == 0


@pytest.mark.asyncio
async def test_pods_beyond_the_gpu_inventory_stay_pending_and_unbound() -> None:
    api = FakeApi()
    mirror = mirror_on(api)
    await mirror.seed()
    names = [api.make_pod("llama3-8b-h100") for _ in range(5)]  # 4 H100s
    mirror.apply_api()
    await mirror.publish()
    states = [pod_state(api, n) for n in names]
    assert [s[0] is not None for s in states] == [True] * 4 + [False]
    assert states[4][1] == "Pending"
    api.delete_gracefully(names[4])  # an unbound pod is deleted at once
    assert mirror.apply_api() == []
    assert mirror.cluster.pods_in(0, PodPhase.PENDING) == 0


def test_api_errors_name_the_call() -> None:
    api = FakeApi()
    calls = fake_calls(api)
    with pytest.raises(AttachError, match="get_namespaced_custom_object: HTTP 404"):
        calls.call(api.get_namespaced_custom_object, "g", "v", NS, "httproutes", "none")
    assert calls.call(api.get_namespaced_custom_object, "g", "v", NS, "httproutes", "none",
                      missing_ok=True) is None

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(AttachError, match="refused: no answer"):
        calls.call(refused)
