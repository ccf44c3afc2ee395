"""The twin's parts: selectors, tables, objects, the Kubernetes API subclass, the mirror, the
pods' /metrics and the command line (fast; the end-to-end runs are in test_e2e_twin.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

kmock = pytest.importorskip("kmock")
pytest.importorskip("pytest_asyncio")

import aiohttp  # noqa: E402 (after the skips)
from kubernetes import client  # noqa: E402

from rlscale.controller.config import parse_config  # noqa: E402
from rlscale.metrics.exposition import parse_pod_metrics  # noqa: E402
from rlscale.sim.pod import PodPhase  # noqa: E402
from rlscale.sim.pool_info import pool_infos  # noqa: E402
from rlscale.sim.scenario import load_scenario  # noqa: E402
from rlscale.twin.files import controller_config, file_sd, kubeconfig  # noqa: E402
from rlscale.twin.kubeapi import DEPLOYMENTS, HTTPROUTES, PODS, Kube, merge_patch  # noqa: E402
from rlscale.twin.objects import (  # noqa: E402
    PodView,
    deployment_object,
    deployment_status,
    namespace_object,
    node_object,
    pod_object,
    route_pool_weights,
    route_weights,
    service_object,
)
from rlscale.twin.pod_metrics import IpPool  # noqa: E402
from rlscale.twin.runner import Twin, TwinError, TwinOptions  # noqa: E402
from rlscale.twin.selectors import (  # noqa: E402
    SelectorError,
    fields_match,
    labels_match,
    parse_label_selector,
)
from rlscale.twin.status import status_line  # noqa: E402
from rlscale.twin.tables import as_table, human_age, wants_table  # noqa: E402

DATA = Path(__file__).parent / "data"
STEP = str(DATA / "twin-step.yaml")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- selectors
@pytest.mark.parametrize(("selector", "expected"), [
    ("", True), ("app=a", True), ("app==a", True), ("app=b", False), ("app!=b", True),
    ("app", True), ("!app", False), ("missing", False), ("!missing", True),
    ("app in (a, b),tier notin (x)", True), ("app in (b,c)", False), ("tier notin (web)", False),
    ("app=a,tier=web", True), ("app=a,tier=db", False), ("other!=x", True),
])
def test_label_selectors(selector: str, expected: bool) -> None:
    assert labels_match({"app": "a", "tier": "web"}, selector) is expected


def test_bad_selectors_are_refused() -> None:
    with pytest.raises(SelectorError, match="unbalanced"):
        parse_label_selector("app in (a,b")
    with pytest.raises(SelectorError):
        fields_match({}, "status.phase")


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Running"}, "spec": {}}
    assert fields_match(pod, "status.phase!=Succeeded,status.phase!=Failed")
    assert not fields_match(pod, "status.phase=Pending")
    assert fields_match(pod, "metadata.name==p,spec.nodeName=")


# ---------------------------------------------------------------------------------- tables
def test_tables_for_kubectl() -> None:
    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io, application/json")
    assert not wants_table("application/json")
    assert [human_age(s) for s in (5, 119, 130, 700, 4 * 3600 + 60, 30 * 3600, 9 * 86400)] == [
        "5s", "119s", "2m10s", "11m", "4h1m", "30h", "9d"]
    deployment = deployment_object("p", "llm", 3, model="m", port=8000, gpus=1, grace_s=60)
    deployment["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    table = as_table("Deployment", [deployment], resource_version="7")
    assert [c["name"] for c in table["columnDefinitions"]][:4] == [
        "Name", "Ready", "Up-to-date", "Available"]
    assert table["rows"][0]["cells"][:4] == ["p", "2/3", 3, 2]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    pod = pod_object(PodView("p-1", "p", "draining", "127.0.1.1", "n", 1, "2025-01-01T00:00:00Z",
                             "2025-01-01T00:01:00Z"), "llm", model="m", port=8000)
    row = as_table("Pod", [pod], resource_version="7", headers=False)
    assert row["columnDefinitions"] == []
    assert row["rows"][0]["cells"][1:3] == ["0/1", "Terminating"]


# ---------------------------------------------------------------------------------- objects
def _views() -> list[PodView]:
    return [PodView(f"p-{i}", "p", state, None if state == "pending" else f"127.0.1.{i}",
                    None if state == "pending" else "n", 1, "2025-01-01T00:00:00Z",
                    "2025-01-01T00:01:00Z" if state == "draining" else None)
            for i, state in enumerate(("pending", "starting", "ready", "draining"))]


def test_objects_deserialize_with_the_official_client() -> None:
    api = client.ApiClient()

    def read(obj: dict[str, Any], kind: str) -> Any:
        return api.deserialize(json.dumps(obj), kind, "application/json")

    pods = [read(pod_object(v, "llm", model="m", port=8000), "V1Pod") for v in _views()]
    assert [(p.status.phase, p.spec.node_name, p.status.pod_ip) for p in pods] == [
        ("Pending", None, None), ("Running", "n", "127.0.1.1"), ("Running", "n", "127.0.1.2"),
        ("Running", "n", "127.0.1.3")]
    ready = [{c.type: c.status for c in p.status.conditions}.get("Ready") for p in pods]
    assert ready == [None, "False", "True", "False"]
    assert pods[3].metadata.deletion_timestamp is not None
    deployment = deployment_object("p", "llm", 3, model="m", port=8000, gpus=2, grace_s=60)
    deployment["status"] = deployment_status(3, _views(), 4)
    status = read(deployment, "V1Deployment").status
    assert (status.replicas, status.ready_replicas, status.available_replicas,
            status.unavailable_replicas, status.observed_generation) == (3, 1, 1, 2, 4)
    node = read(node_object("gpu-h100", "H100", 4), "V1Node")
    assert node.status.allocatable == {"nvidia.com/gpu": "4"}
    read(service_object("p", "llm", 8000), "V1Service")
    read(namespace_object("llm"), "V1Namespace")


def test_weights() -> None:
    assert route_weights({"a": 2, "b": 1, "c": 0.3}) == {"a": 606, "b": 303, "c": 91}
    assert route_weights({"a": 0, "b": 0}) == {"a": 0, "b": 0}
    route = {"spec": {"rules": [{"backendRefs": [{"name": "x"}]}, {"backendRefs": [
        {"name": "a", "weight": 3}, {"name": "b"}, {"name": "other", "weight": 9}]}]}}
    assert route_pool_weights(route, ["a", "b"]) == {"a": 3.0, "b": 1.0}
    assert route_pool_weights({"spec": {}}, ["a"]) is None
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3}, "l": [2]}


def test_ip_pool_does_not_reuse_a_held_address() -> None:
    pool = IpPool()
    first = [pool.take() for _ in range(3)]
    assert first == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    pool.release("127.0.1.2")
    assert pool.take() == "127.0.1.4"


# ---------------------------------------------------------------------------------- API
def _deployment(k: Any, name: str = "d", replicas: int = 2) -> None:
    k.objects[DEPLOYMENTS, "llm", name] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "llm", "resourceVersion": "5",
                     "generation": 1, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {"replicas": replicas}}


MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
D = "/apis/apps/v1/namespaces/llm/deployments/d"


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_versions_conflicts_put_and_json_patch(kmock: Any) -> None:
    _deployment(kmock)
    stale = await kmock.patch(D, data=json.dumps({"metadata": {"resourceVersion": "1"},
                                                  "spec": {"replicas": 3}}), headers=MERGE)
    assert stale.status == 409
    ok = await kmock.patch(D, data=json.dumps({"metadata": {"resourceVersion": "5"},
                                               "spec": {"replicas": 3}}), headers=MERGE)
    body = await ok.json()
    assert ok.status == 200
    assert body["spec"]["replicas"] == 3
    assert body["metadata"]["generation"] == 2
    assert body["metadata"]["resourceVersion"] != "5"
    status_only = await kmock.patch(D, data=json.dumps({"status": {"replicas": 3}}),
                                    headers=MERGE)
    assert (await status_only.json())["metadata"]["generation"] == 2  # spec unchanged
    patched = await kmock.patch(D, data=json.dumps(
        [{"op": "replace", "path": "/spec/replicas", "value": 4}]), headers=JSON_PATCH)
    assert (await patched.json())["spec"]["replicas"] == 4
    failed_test = await kmock.patch(D, data=json.dumps(
        [{"op": "test", "path": "/spec/replicas", "value": 9}]), headers=JSON_PATCH)
    assert failed_test.status == 409
    current = await (await kmock.get(D)).json()
    replaced = await kmock.put(D, json={**current, "spec": {**current["spec"], "replicas": 1}})
    assert (await replaced.json())["spec"]["replicas"] == 1
    again = await kmock.put(D, json={**current, "spec": {**current["spec"], "replicas": 7}})
    assert again.status == 409  # current's resourceVersion is no longer the stored one
    created = await kmock.post("/api/v1/namespaces/llm/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}})
    assert created.status == 201
    meta = (await created.json())["metadata"]
    assert meta["namespace"] == "llm"
    assert meta["uid"]
    assert meta["creationTimestamp"]
    duplicate = await kmock.post("/api/v1/namespaces/llm/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert duplicate.status == 409
    assert [(w.method, w.resource, w.status) for w in kmock.writes] == [
        ("PATCH", "deployments", 409), ("PATCH", "deployments", 200),
        ("PATCH", "deployments", 200), ("PATCH", "deployments", 200),
        ("PATCH", "deployments", 409), ("PUT", "deployments", 200),
        ("PUT", "deployments", 409), ("POST", "configmaps", 201), ("POST", "configmaps", 409)]


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_the_scale_subresource_and_injected_failures(kmock: Any) -> None:
    _deployment(kmock)
    scale = await (await kmock.get(f"{D}/scale")).json()
    assert (scale["kind"], scale["apiVersion"], scale["spec"]) == (
        "Scale", "autoscaling/v1", {"replicas": 2})
    assert scale["status"]["selector"] == "app=d"
    patched = await kmock.patch(f"{D}/scale", data=json.dumps({"spec": {"replicas": 5}}),
                                headers=MERGE)
    assert (await patched.json())["spec"]["replicas"] == 5
    assert kmock.objects[DEPLOYMENTS, "llm", "d"]["spec"]["replicas"] == 5
    assert kmock.objects[DEPLOYMENTS, "llm", "d"]["metadata"]["generation"] == 2
    put = await kmock.put(f"{D}/scale", json={**scale, "spec": {"replicas": 1}})
    assert put.status == 409  # the Scale's resourceVersion is stale
    bad = await kmock.patch(f"{D}/scale", data=json.dumps({"spec": {"replicas": -1}}),
                            headers=MERGE)
    assert bad.status == 422
    kmock.faults.add("deployments/scale", 500, 2)
    kmock.faults.add("httproutes", 409)
    statuses = [(await kmock.patch(f"{D}/scale", data=json.dumps({"spec": {"replicas": 3}}),
                                   headers=MERGE)).status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert (await kmock.get(f"{D}/scale")).status == 200  # reads are not hit
    assert kmock.faults.pending() == {"httproutes": [409]}
    kmock.faults.add("*", 503, reads=True)
    assert (await kmock.get(D)).status == 503
    missing = await kmock.get("/apis/apps/v1/namespaces/llm/deployments/nope/scale")
    assert missing.status == 404


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_lists_select_and_print_tables_and_discovery_names_the_core_group(
        kmock: Any) -> None:
    for name, app, phase in (("a", "x", "Running"), ("b", "y", "Running"), ("c", "x", "Failed")):
        await kmock.put_object(PODS, "llm", name, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": app}},
            "spec": {}, "status": {"phase": phase}})
    listed = await (await kmock.get("/api/v1/namespaces/llm/pods",
                                    params={"labelSelector": "app=x"})).json()
    assert (listed["kind"], listed["apiVersion"]) == ("PodList", "v1")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "c"]
    running = await (await kmock.get("/api/v1/pods", params={
        "fieldSelector": "status.phase!=Failed"})).json()
    assert sorted(p["metadata"]["name"] for p in running["items"]) == ["a", "b"]
    table = await (await kmock.get("/api/v1/namespaces/llm/pods", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert table["kind"] == "Table"
    assert len(table["rows"]) == 3
    core = await (await kmock.get("/api/v1")).json()
    assert core["groupVersion"] == "v1"
    assert "pods" in [r["name"] for r in core["resources"]]
    apps = await (await kmock.get("/apis/apps/v1")).json()
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"], scale["shortNames"]) == (
        "autoscaling", "v1", "Scale", [])
    groups = await (await kmock.get("/apis")).json()
    assert "metrics.k8s.io" not in [g["name"] for g in groups["groups"]]


@pytest.mark.asyncio
@pytest.mark.kmock(cls=Kube)
async def test_watch_streams_changes_as_json_lines(kmock: Any) -> None:
    await kmock.put_object(PODS, "llm", "a", {"metadata": {"labels": {"app": "x"}}, "spec": {}})
    events: list[tuple[str, str]] = []

    async def watch(params: dict[str, str]) -> None:
        async with kmock.get("/api/v1/namespaces/llm/pods",
                             params={"watch": "true", "timeoutSeconds": "1", **params}) as resp:
            assert resp.headers["Content-Type"].startswith("application/json")
            async for line in resp.content:
                event = json.loads(line)
                events.append((event["type"], event["object"]["metadata"]["name"]))

    task = asyncio.create_task(watch({"labelSelector": "app=x"}))
    await asyncio.sleep(0.2)
    await kmock.put_object(PODS, "llm", "b", {"metadata": {"labels": {"app": "y"}}, "spec": {}})
    await kmock.put_object(PODS, "llm", "c", {"metadata": {"labels": {"app": "x"}}, "spec": {}})
    await kmock.delete_object(PODS, "llm", "a")
    await task
    assert events == [("ADDED", "a"), ("ADDED", "c"), ("DELETED", "a")]
    events.clear()
    await watch({"resourceVersion": kmock.current_version})  # nothing replayed, nothing new
    assert events == []


# ---------------------------------------------------------------------------------- mirror, pods
async def _twin(tmp_path: Path, **kwargs: Any) -> Twin:
    options = TwinOptions(scenario=STEP, speed=kwargs.pop("speed", 60.0),
                          kubeconfig_out=str(tmp_path / "kubeconfig"),
                          controller_config_out=str(tmp_path / "controller.yaml"),
                          prometheus_sd=str(tmp_path / "sd.json"), status_every_s=0, **kwargs)
    twin = Twin(options, load_scenario(STEP), out=io.StringIO())
    await twin.start()
    return twin


@pytest.mark.asyncio
@pytest.mark.parametrize("log_format", ["text", "json", "auto"])
async def test_the_twin_prints_text_for_people_and_json_for_logs(
        tmp_path: Path, log_format: Any) -> None:
    twin = await _twin(tmp_path, log_format=log_format)
    try:
        out = twin.out.getvalue().splitlines()  # type: ignore[attr-defined]
    finally:
        await twin.close()
    assert len(out) > 3
    if log_format == "text":
        assert out[0].startswith("rlscale twin: scenario ")
        assert not any(line.startswith("{") for line in out)
    else:  # a StringIO is no terminal: auto gives JSON
        entries = [json.loads(line) for line in out]
        assert entries[0]["message"].startswith("rlscale twin: scenario ")
        assert {e["logger"] for e in entries} == {"rlscale.twin"}
        assert all(e["level"] == "info" and e["time"].endswith("+00:00") for e in entries)


@pytest.mark.asyncio
async def test_the_twin_mirrors_the_simulator_and_serves_pod_metrics(tmp_path: Path) -> None:
    twin = await _twin(tmp_path)
    kube = twin.kube
    try:
        assert twin.cluster.desired == [1, 1, 1]
        pods = kube.objects_of(PODS, "llm")
        assert sorted(p["metadata"]["name"] for p in pods) == [
            "llama3-8b-a100-2", "llama3-8b-h100-1", "llama3-8b-l4-3"]
        sd = json.loads((tmp_path / "sd.json").read_text())
        assert {e["labels"]["pod"] for e in sd} == {p["metadata"]["name"] for p in pods}
        assert all(e["labels"]["namespace"] == "llm" for e in sd)
        # scale through the API: the simulator follows, pods go pending/starting/ready
        async with aiohttp.ClientSession(twin.url) as http:
            resp = await http.patch("/apis/apps/v1/namespaces/llm/deployments/llama3-8b-h100"
                                    "/scale", data=json.dumps({"spec": {"replicas": 6}}),
                                    headers=MERGE)
            assert resp.status == 200
            await twin.tick()
            assert twin.cluster.desired[0] == 6
            phases = [p.phase for p in twin.cluster.pool_pods[0]]
            assert phases.count(PodPhase.PENDING) == 2  # 4 H100 GPUs in the inventory
            states = {p["metadata"]["name"]: (p["status"]["phase"], p["spec"].get("nodeName"))
                      for p in kube.objects_of(PODS, "llm")}
            assert sum(1 for phase, node in states.values() if phase == "Pending"
                       and node is None) == 2
            deployment = kube.get_object(DEPLOYMENTS, "llm", "llama3-8b-h100")
            assert deployment is not None
            assert deployment["status"]["observedGeneration"] == deployment["metadata"][
                "generation"] == 2
            assert deployment["status"]["replicas"] == 6
            # weights through the API
            route = kube.get_object(HTTPROUTES, "llm", "vllm")
            assert route is not None
            for ref, weight in zip(route["spec"]["rules"][0]["backendRefs"], (0, 1, 0),
                                   strict=True):
                ref["weight"] = weight
            assert (await http.put("/apis/gateway.networking.k8s.io/v1/namespaces/llm/"
                                   "httproutes/vllm", json=route)).status == 200
            await twin.tick()
            assert twin.cluster.router.weights == [0.0, 1.0, 0.0]
            line = status_line(twin.cluster, speed=60, weights=twin.mirror.weights,
                               arrival_rps=8.0, tally=twin.tally, lag_s=0.0)
            assert "llama3-8b-h100 " in line
            assert "weights 0/100/0 %" in line
            status = await (await http.get("/twin/status")).json()
            assert status["history"]["replicas"]["llama3-8b-h100"][-1][2] == 6
            assert status["history"]["weights"][-1][2] == {
                "llama3-8b-h100": 0.0, "llama3-8b-a100": 1.0, "llama3-8b-l4": 0.0}
            assert [w["resource"] for w in status["writes"]] == ["deployments/scale",
                                                                  "httproutes"]
            # a pod's /metrics, on its own address; and a hang injected through /twin/faults
            url = twin.pod_metrics.endpoints["llama3-8b-a100-2"]
            async with http.get(url) as page:
                assert page.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                sample = parse_pod_metrics(await page.text(), pod="x", pool="y")
            assert sample.request_success_total >= 0
            resp = await http.post("/twin/faults", json={"hang": {"target": "llama3-8b-a100",
                                                                  "seconds": 5}})
            assert (await resp.json())["hang_s"] == {"llama3-8b-a100": 5.0}
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(http.get(url), 0.3)
            bad = await http.post("/twin/faults", json={"nope": 1})
            assert bad.status == 400
    finally:
        await twin.close()


@pytest.mark.asyncio
async def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(TwinError, match=r"cannot listen on 127\.0\.0\.1:.*--port"):
            await _twin(tmp_path, port=sock.getsockname()[1])


def test_the_generated_controller_config_is_valid_and_scaled() -> None:
    scenario = load_scenario(STEP)
    capacity = {"llama3-8b-h100": 12.0, "llama3-8b-a100": 5.0, "llama3-8b-l4": 0.75}
    infos = [dataclasses.replace(p, capacity_rps=capacity[p.name])
             for p in pool_infos(scenario, scenario.build_workload(np.random.default_rng(0)))]
    data = controller_config(scenario, speed=60, namespace="llm", route="vllm",
                             metrics_port=9000, pools=infos)
    config = parse_config(data)
    assert config.interval_s == 0.5
    assert config.metrics.port == 9000
    assert [p.profile.capacity_rps for p in config.pools if p.profile] == [720.0, 300.0, 45.0]
    assert config.policy.knobs["scale_down_delay_s"] == 2.0
    assert config.leader_election.lease_duration_s == 3.0
    # pods' counters grow 60 times faster per wall second: so may their token rates
    assert config.plausibility.tokens_per_s_per_gpu == 6e7
    assert kubeconfig("http://127.0.0.1:1", "llm")["contexts"][0]["context"]["namespace"] == "llm"
    assert file_sd([("p", "pool", "127.0.1.1:9")], "llm") == [{
        "targets": ["127.0.1.1:9"], "labels": {"namespace": "llm", "pod": "p", "pool": "pool",
                                               "job": "vllm"}}]


def test_the_command_line_refuses_an_unknown_scenario() -> None:
    result = subprocess.run([sys.executable, "-m", "rlscale.twin", "--scenario", "nope",
                             "--kubeconfig-out", "", "--controller-config-out", ""],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown scenario 'nope'" in result.stderr


def test_the_twin_imports_no_controller_agents_or_torch() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import rlscale.twin, rlscale.twin.__main__\n"
        "for m in pkgutil.iter_modules(rlscale.twin.__path__):\n"
        "    importlib.import_module('rlscale.twin.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'stable_baselines3', 'sb3_contrib', 'gymnasium') "
        "or m.startswith(('rlscale.controller', 'rlscale.agents', 'rlscale.envs')))\n"
        "assert not bad, bad\n"
        "assert 'rlscale.twin.runner' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
