"""The actuator: scale and weights patches, retries with backoff, permanent errors."""

from __future__ import annotations

from typing import Any

import pytest
from controller_fakes import FakeApps, FakeCustom, clients, deployment, httproute

from rlscale.controller.actuator import (
    KubernetesActuator,
    PermanentActuationError,
    RetryPolicy,
    TemporaryActuationError,
    backend_weights,
    weights_patch,
)
from rlscale.controller.resources import RouteConfig

ROUTE = RouteConfig("llm", "vllm", {"svc-a": "a", "svc-b": "b"})


def _actuator(apps: FakeApps | None = None, custom: FakeCustom | None = None,
              attempts: int = 4) -> tuple[KubernetesActuator, list[float]]:
    sleeps: list[float] = []
    actuator = KubernetesActuator(clients(apps, custom=custom),
                                  retry=RetryPolicy(attempts=attempts, base_delay_s=0.1,
                                                    max_delay_s=0.3), sleep=sleeps.append)
    return actuator, sleeps


@pytest.mark.parametrize(("failures", "calls", "sleeps"), [
    ([], 1, []),
    ([409, 409], 3, [0.1, 0.2]),
    ([500, 503, 429], 4, [0.1, 0.2, 0.3]),
    ([ConnectionResetError("reset by peer")], 2, [0.1]),
])
def test_scale_retries_temporary_errors_then_succeeds(
        failures: list[Any], calls: int, sleeps: list[float]) -> None:
    apps = FakeApps(deployment("vllm-a", replicas=2))
    apps.fail["patch_namespaced_deployment_scale"] = list(failures)
    actuator, slept = _actuator(apps)
    actuator.scale("llm", "vllm-a", 5)
    made = apps.called("patch_namespaced_deployment_scale")
    assert len(made) == calls
    assert slept == sleeps
    (name, namespace, body), kwargs = made[-1]
    assert (name, namespace, body) == ("vllm-a", "llm", {"spec": {"replicas": 5}})
    assert kwargs["_content_type"] == "application/merge-patch+json"
    assert kwargs["field_manager"] == "rlscale-controller"
    assert apps.deployments["llm", "vllm-a"].spec.replicas == 5


def test_scale_gives_up_after_the_attempts_with_a_temporary_error() -> None:
    apps = FakeApps(deployment("vllm-a"))
    apps.fail["patch_namespaced_deployment_scale"] = [500] * 10
    actuator, slept = _actuator(apps, attempts=4)
    with pytest.raises(TemporaryActuationError, match="gave up after 4 attempts: HTTP 500"):
        actuator.scale("llm", "vllm-a", 3)
    assert len(apps.called("patch_namespaced_deployment_scale")) == 4
    assert slept == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("status", [403, 404, 422, 400])
def test_client_errors_are_permanent_and_never_retried(status: int) -> None:
    apps = FakeApps(deployment("vllm-a"))
    apps.fail["patch_namespaced_deployment_scale"] = [status]
    actuator, slept = _actuator(apps)
    with pytest.raises(PermanentActuationError, match=f"HTTP {status}"):
        actuator.scale("llm", "vllm-a", 3)
    assert len(apps.called("patch_namespaced_deployment_scale")) == 1
    assert slept == []


def test_weights_patch_shape() -> None:
    route = httproute({"svc-a": 1, "svc-b": None, "other": 7}, rules=2)
    route["metadata"]["resourceVersion"] = "42"
    patch = weights_patch(route, {"svc-a": 700, "svc-b": 300})
    assert patch is not None
    assert patch["metadata"] == {"resourceVersion": "42"}
    assert list(patch) == ["metadata", "spec"]
    assert list(patch["spec"]) == ["rules"]
    rules = patch["spec"]["rules"]
    assert len(rules) == 2
    for i, rule in enumerate(rules):
        assert rule["matches"] == route["spec"]["rules"][i]["matches"]  # untouched
        assert [(r["name"], r.get("weight")) for r in rule["backendRefs"]] == [
            ("svc-a", 700), ("svc-b", 300), ("other", 7)]
        assert all(r["port"] == 8000 and r["kind"] == "Service" for r in rule["backendRefs"])
    assert route["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1  # input not modified
    assert weights_patch(route, {"svc-a": 1, "other": 7}) is None  # nothing to change
    with pytest.raises(PermanentActuationError, match=r"no backendRef named \['svc-z'\]"):
        weights_patch(route, {"svc-z": 1})


def test_set_weights_rereads_and_reapplies_after_a_conflict() -> None:
    custom = FakeCustom(httproute({"svc-a": 500, "svc-b": 500}))
    writes = {"n": 0}

    def another_writer(route: dict[str, Any]) -> None:  # changes the route after our read
        if writes["n"] == 0:
            writes["n"] += 1
            route["spec"]["parentRefs"].append({"name": "second-gateway"})
            custom.bump(route)

    custom.on_get = another_writer
    actuator, slept = _actuator(custom=custom)
    actuator.set_weights(ROUTE, {"svc-a": 800, "svc-b": 200})
    assert len(custom.called("get_namespaced_custom_object")) == 2
    assert len(custom.called("patch_namespaced_custom_object")) == 2
    assert slept == [0.1]
    route = custom.routes["llm", "vllm"]
    assert [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]] == [800, 200]
    assert {"name": "second-gateway"} in route["spec"]["parentRefs"]  # the other write kept
    _, kwargs = custom.called("patch_namespaced_custom_object")[-1]
    assert kwargs["_content_type"] == "application/merge-patch+json"


def test_set_weights_permanent_and_out_of_range() -> None:
    custom = FakeCustom(httproute({"svc-a": 1, "svc-b": 1}))
    custom.fail["patch_namespaced_custom_object"] = [403]
    actuator, slept = _actuator(custom=custom)
    with pytest.raises(PermanentActuationError, match="HTTP 403"):
        actuator.set_weights(ROUTE, {"svc-a": 1, "svc-b": 2})
    assert slept == []
    with pytest.raises(PermanentActuationError, match=r"\[0, 1000000\]"):
        actuator.set_weights(ROUTE, {"svc-a": 2_000_000})


def test_backend_weights_split_a_pool_over_its_backend_refs() -> None:
    route = RouteConfig("llm", "vllm", {"svc-a1": "a", "svc-a2": "a", "svc-b": "b"})
    assert backend_weights(route, {"a": 0.75, "b": 0.25}) == {
        "svc-a1": 375, "svc-a2": 375, "svc-b": 250}
    assert backend_weights(route, {"a": 1.0, "b": 0.0}) == {
        "svc-a1": 500, "svc-a2": 500, "svc-b": 0}
