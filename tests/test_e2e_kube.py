"""End to end on a real Kubernetes control plane: etcd, kube-apiserver and
kube-controller-manager built from the published Go modules (``tools/kube/build.sh``; see
``rlscale/twin/localplane.py``), the twin attached to it as a virtual GPU node pool
(``rlscale twin --kubeconfig``), and the controller running with nothing but its
ServiceAccount's token and the RBAC rendered from ``deploy/``.

One control plane serves the whole module (it takes 20-60 s to start). On it:
``deploy/examples/llama3-8b-3pool`` is applied for real (the Gateway API HTTPRoute CRD from the
``sigs.k8s.io/gateway-api`` module installed first), so the pools are the example's
Deployments, Services and HTTPRoute, run by the real Deployment and ReplicaSet controllers, and
the twin binds and runs their Pods.

The control plane binary must be built; when it is not, the tests fail in CI (``CI=true``)
and are skipped elsewhere, with the command that builds it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.version_info < (3, 11), reason="the twin needs kmock (Python >= 3.11)"),
]
pytest.importorskip("kmock")
pytest.importorskip("kubernetes")

from e2e_procs import (  # noqa: E402 (after the skips)
    BUNDLE,
    LIMITS,
    POOLS,
    ROOT,
    ControllerProc,
    TwinProc,
    alive_without_traceback,
    controller_config,
    event_time,
    leader_and_follower,
    start_controller,
    stop_controllers,
    wait_until,
)

from rlscale.controller.kube import API_CALLS  # noqa: E402
from rlscale.twin.localplane import LocalPlane, built_dir  # noqa: E402

H100, A100, L4 = POOLS
EXAMPLE = ROOT / "deploy" / "examples" / "llama3-8b-3pool"
NAMESPACE, SYSTEM = "llm", "rlscale-system"
SERVICE_ACCOUNT = "rlscale-controller"
LEASE = "rlscale-controller"
"""The only Lease name deploy/base/rbac.yaml lets the controller get and update."""
ROUTE = "vllm-llama3-8b"
STATIC = {"heuristic": "static", "knobs": {"replicas": [2, 1, 1]}}
ONE_EACH = dict.fromkeys(POOLS, 1)
CONTROLLER_MANAGER = "rlscale-controller"
"""The controller's fieldManager (rlscale/controller/actuator.py)."""

Start = Callable[..., ControllerProc]


def _not_built(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI must run these tests: .ci/run builds it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlane]:
    """The control plane, with the HTTPRoute CRD installed and the example applied."""
    binary_dir = built_dir()
    if binary_dir is None:
        _not_built("the local Kubernetes control plane is not built: run `bash "
                   "tools/kube/build.sh` (once, then cached; ~1.5 h on a busy 2-core machine)")
        raise AssertionError("unreachable")
    started = time.monotonic()
    with LocalPlane(binary_dir, tmp_path_factory.mktemp("kube")) as running:
        print(f"control plane ready in {time.monotonic() - started:.1f} s")
        running.kubectl("apply", "--server-side", "-f", str(running.httproute_crd))
        running.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                        "crd/httproutes.gateway.networking.k8s.io")
        yield running
        print(running.report(15))


@pytest.fixture(scope="module")
def example(plane: LocalPlane) -> LocalPlane:
    """The example applied: first its namespaces, then a server-side dry run of everything
    (checked by a test), then for real."""
    for path in (ROOT / "deploy" / "base" / "namespace.yaml", EXAMPLE / "namespace.yaml"):
        plane.kubectl("apply", "-f", str(path))
    plane.kubectl("apply", "-k", str(EXAMPLE))
    # nothing runs the in-cluster controller's pods here: the tests start their own
    plane.kubectl("scale", "deployment/rlscale-controller", "-n", SYSTEM, "--replicas=0")
    return plane


@pytest.fixture(scope="module")
def sa_kubeconfig(example: LocalPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig with the controller ServiceAccount's token (TokenRequest API)."""
    return example.service_account_kubeconfig(
        SYSTEM, SERVICE_ACCOUNT, tmp_path_factory.mktemp("sa") / "controller.kubeconfig")


@pytest.fixture(scope="module")
def twin(example: LocalPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinProc]:
    """The twin at 60x attached to the example's pools."""
    proc = TwinProc(tmp_path_factory.mktemp("attached-twin"), plane=example,
                    namespace=NAMESPACE, route=ROUTE, lease_namespace=SYSTEM)
    yield proc
    proc.stop()
    print(proc.report())


@pytest.fixture
def start(tmp_path: Path, sa_kubeconfig: Path, example: LocalPlane) -> Iterator[Start]:
    """Start controllers with the ServiceAccount's kubeconfig; killed at teardown, then the
    Lease is deleted so that the next test's controller need not wait for it to expire."""
    started: list[ControllerProc] = []

    def run(name: str, config: dict[str, Any]) -> ControllerProc:
        return start_controller(started, tmp_path, name, config, sa_kubeconfig)

    yield run
    stop_controllers(started)
    example.kubectl("delete", "lease", LEASE, "-n", SYSTEM, "--ignore-not-found")


def config_for(twin: TwinProc, identity: str, **changes: Any) -> dict[str, Any]:
    """The twin's generated controller config, on the Lease deploy/base's RBAC allows."""
    config = controller_config(twin, identity, **changes)
    config["leader_election"].update(name=LEASE, namespace=SYSTEM)
    return config


def generations(twin: TwinProc) -> dict[str, int]:
    """``metadata.generation`` of every pool's Deployment and of the HTTPRoute (it changes
    with every write of their spec, and only then)."""
    out = {pool: int(twin.deployment(pool)["metadata"]["generation"]) for pool in POOLS}
    out["route"] = int(twin.route()["metadata"]["generation"])
    return out


def replicas_managers(twin: TwinProc, pool: str) -> set[str]:
    """The field managers owning the Deployment's ``spec.replicas`` (``managedFields``)."""
    owners = set()
    for entry in twin.deployment(pool)["metadata"].get("managedFields") or []:
        fields = json.dumps(entry.get("fieldsV1") or {})
        if '"f:replicas"' in fields and '"f:spec"' in fields:
            owners.add(entry["manager"])
    return owners



# ---------------------------------------------------------------------------------- manifests
def test_the_example_passes_a_server_side_dry_run(plane: LocalPlane) -> None:
    """``kubectl apply -k deploy/examples/llama3-8b-3pool --dry-run=server``: every object
    (the HTTPRoute through the CRD's schema, the pod templates through Pod Security
    admission) is admitted by the real API server without a warning."""
    for path in (ROOT / "deploy" / "base" / "namespace.yaml", EXAMPLE / "namespace.yaml"):
        plane.kubectl("apply", "-f", str(path))
    result = plane.kubectl("apply", "-k", str(EXAMPLE), "--dry-run=server")
    rendered = yaml.safe_load_all(plane.kubectl("kustomize", str(EXAMPLE)).stdout)
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered if doc}
    lines = result.stdout.splitlines()
    assert len(lines) == len(kinds), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout
    assert any(line.startswith("httproute.gateway.networking.k8s.io/vllm-llama3-8b")
               for line in lines), result.stdout
    # Pod Security admission checks the pod templates against the namespaces' levels
    # (baseline for vLLM, restricted for the controller) and warns on a violation
    assert "PodSecurity" not in result.stderr, result.stderr
    # the CRD's validation is real: a weight above the schema's maximum is refused
    route = next(doc for doc in yaml.safe_load_all((EXAMPLE / "httproute.yaml").read_text()))
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 10_000_000
    bad = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(route),
                        check=False)
    assert bad.returncode != 0, bad.stdout
    assert "weight" in bad.stderr, bad.stderr


# ---------------------------------------------------------------------------------- RBAC
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def _can_i(plane: LocalPlane, kubeconfig: Path, verb: str, resource: str,
           namespace: str | None, subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = plane.kubectl(*args, kubeconfig_file=kubeconfig, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}"
    return answer == "yes"


def test_the_controller_can_do_exactly_what_api_calls_lists(example: LocalPlane,
                                                            sa_kubeconfig: Path) -> None:
    """``kubectl auth can-i`` with the ServiceAccount's own token, for every resource
    API_CALLS names and every verb: yes exactly where API_CALLS has the call (in the scope's
    namespace, on the names the Roles allow), no everywhere else."""
    names = {"deployments": "vllm-llama3-8b-h100", "httproutes": ROUTE, "leases": LEASE}
    namespaces = {"pools": NAMESPACE, "lease": SYSTEM, "cluster": None}
    # cluster-wide pod listing is opt-in (gpus.pod_scope: cluster): deploy/ does not grant it
    granted = [c for c in API_CALLS.values() if c.scope in namespaces]
    allowed = {(c.api_group, c.resource, c.verb, c.scope) for c in granted}
    resources = sorted({(c.api_group, c.resource, c.scope) for c in granted})
    matrix: dict[str, str] = {}
    wrong = []
    for group, resource, scope in resources:
        base, _, sub = resource.partition("/")
        qualified = f"{base}.{group}" if group else base
        target = f"{qualified}/{names[base]}" if base in names else qualified
        for verb in ALL_VERBS:
            if verb in ("list", "watch", "deletecollection", "create") and base in names:
                target_here = qualified  # no name at list or create time
            else:
                target_here = target
            can = _can_i(example, sa_kubeconfig, verb, target_here, namespaces[scope],
                         sub or None)
            should = (group, resource, verb, scope) in allowed
            matrix[f"{verb} {target_here}{'/' + sub if sub else ''} "
                   f"({namespaces[scope] or 'all namespaces'})"] = "yes" if can else "no"
            if can != should:
                wrong.append(f"{verb} {resource} in {scope}: can={can}, API_CALLS={should}")
    # and nothing beyond those resources
    for verb, resource, namespace in [
            ("get", "secrets", NAMESPACE), ("list", "secrets", None),
            ("get", "configmaps", SYSTEM), ("patch", "deployments.apps/other", NAMESPACE),
            ("patch", "deployments.apps/vllm-llama3-8b-h100", NAMESPACE),
            ("delete", "pods", NAMESPACE), ("create", "pods", NAMESPACE),
            ("patch", "nodes", None), ("update", "leases.coordination.k8s.io/other", SYSTEM),
            ("get", "leases.coordination.k8s.io", NAMESPACE),
            ("patch", "httproutes.gateway.networking.k8s.io/other", NAMESPACE),
            ("create", "events", "default"), ("list", "pods", "default"),
            ("get", "horizontalpodautoscalers.autoscaling", NAMESPACE)]:
        can = _can_i(example, sa_kubeconfig, verb, resource, namespace)
        matrix[f"{verb} {resource} ({namespace or 'all namespaces'})"] = "yes" if can else "no"
        if can:
            wrong.append(f"{verb} {resource} in {namespace}: allowed, not in API_CALLS")
    print("\n".join(f"{answer:>3}  {check}" for check, answer in matrix.items()))
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------- the loop
def test_a_load_step_on_the_real_api_server(twin: TwinProc, start: Start,
                                            example: LocalPlane) -> None:
    """The planner under the ServiceAccount's RBAC scales the example's Deployments through
    the scale subresource; the real ReplicaSet controller makes the Pods, the twin runs them;
    the HTTPRoute's weights (CRD-validated) follow. Field ownership shows the controller."""
    ctl = start("planner", config_for(twin, "planner-0"))
    wait_until(lambda: twin.status()["sim_time_s"] >= 700, 60, "the end of the load step",
               interval_s=0.25, report=twin.report)
    history = twin.status()["history"]
    h100 = [int(n) for _, _, n in history["replicas"][H100]]
    assert max(h100) == LIMITS[H100][1], history["replicas"]
    assert max(int(n) for _, _, n in history["replicas"][A100]) >= 2, history["replicas"]
    assert any(w[H100] / sum(w.values()) > 0.5 for _, _, w in history["weights"]), history
    # the Deployment's Pods exist in the API (made by the ReplicaSet controller) and are Ready
    pods = example.get(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=rlscale.io/pool%3D"
                       f"{H100}")["items"]
    assert pods
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
                        for p in pods)
    assert any(p["status"].get("podIP") for p in pods)
    assert CONTROLLER_MANAGER in replicas_managers(twin, H100)
    wait_until(lambda: twin.replicas()[H100] <= 2, 60, "scale-down after the load step",
               interval_s=0.25, report=ctl.report)
    ready = wait_until(lambda: twin.deployment(H100)["status"].get("readyReplicas"), 30,
                       "the Deployment's status to show ready replicas")
    assert ready <= LIMITS[H100][1]
    alive_without_traceback(ctl)
    assert "Forbidden" not in ctl.text(), ctl.report(100)


def test_shadow_mode_writes_nothing_to_the_real_api_server(twin: TwinProc, start: Start) -> None:
    twin.reset(ONE_EACH, timeout_s=60)
    before = generations(twin)
    config = config_for(twin, "shadow-0", mode="shadow", policy=STATIC)
    ctl = start("shadow", config)
    wait_until(lambda: ctl.total("rlscale_decisions_total") >= 5 * len(POOLS), 30,
               "five shadow decisions", report=ctl.report)
    would = [a for d in ctl.decisions() for a in d["actions"]]
    assert any(a.startswith(f"would scale llm/{twin.deployments[H100]} 1->2")
               for a in would), would
    assert generations(twin) == before
    assert twin.replicas() == ONE_EACH
    alive_without_traceback(ctl)



def test_two_controllers_share_the_real_lease_and_the_follower_takes_over(
        twin: TwinProc, start: Start) -> None:
    twin.reset(ONE_EACH, timeout_s=60)
    since = time.time()
    procs = {name: start(name, config_for(twin, name, policy=STATIC))
             for name in ("ctl-a", "ctl-b")}
    lease_s = procs["ctl-a"].config["leader_election"]["lease_duration_s"]
    retry_s = procs["ctl-a"].config["leader_election"]["retry_period_s"]
    leader, follower = leader_and_follower(twin, procs, LEASE, H100)
    events = [e for e in twin.events() if event_time(e) >= since
              and e.get("reportingComponent") == CONTROLLER_MANAGER]
    assert events
    assert {e["reportingInstance"] for e in events} == {leader.name}

    leader.kill()  # SIGKILL: no release of the Lease
    killed = time.monotonic()
    twin.scale(H100, 1)
    wait_until(lambda: (twin.lease(LEASE) or {})["spec"]["holderIdentity"] == follower.name,
               lease_s + 4 * retry_s + 10, "the follower to take the Lease", interval_s=0.05,
               report=follower.report)
    took_s = time.monotonic() - killed
    print(f"takeover {took_s:.2f} s after the SIGKILL (lease {lease_s:g} s)")
    assert took_s <= lease_s + 4 * retry_s + 5.0, took_s
    lease = twin.lease(LEASE)
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] >= 1
    wait_until(lambda: twin.replicas()[H100] == 2, 20, "the new leader to restore H100",
               report=follower.report)
    alive_without_traceback(follower)


def test_a_corrupt_bundle_falls_back_on_the_real_api_server(twin: TwinProc, start: Start,
                                                             tmp_path: Path) -> None:
    twin.reset(ONE_EACH, timeout_s=60)
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    weights = bundle / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    ctl = start("corrupt", config_for(twin, "corrupt-0", policy={"bundle": str(bundle)}))
    wait_until(lambda: len(ctl.decisions()) >= 4, 20, "four decisions", report=ctl.report)
    decisions = ctl.decisions()
    assert {d["reason"] for d in decisions} == {"BundleLoadFailed"}
    assert {d["policy"] for d in decisions if not d["kept"]} == {"planner"}
    alive_without_traceback(ctl)


def test_revoked_rbac_is_a_permanent_error_and_regranted_rbac_recovers(
        twin: TwinProc, start: Start, example: LocalPlane) -> None:
    """The real API server's own errors: the pools' RoleBinding deleted (403 Forbidden on
    every read and write in ``llm``) -> no write, the controller keeps running and says why;
    the binding applied again -> it acts again. (The test itself scales H100 back to 1 during
    the outage; ``outside_writes: override`` makes the controller restore its decision rather
    than back off from that outside write, the default.)"""
    twin.reset(ONE_EACH, timeout_s=60)
    ctl = start("rbac", config_for(twin, "rbac-0", policy=STATIC,
                                   outside_writes={"rule": "override"}))
    wait_until(lambda: twin.replicas()[H100] == 2, 20, "the first scale-up", report=ctl.report)
    example.kubectl("delete", "rolebinding", "rlscale-controller", "-n", NAMESPACE)
    revoked = time.time()
    try:
        twin.scale(H100, 1)
        blind = wait_until(lambda: [d for d in ctl.decisions() if d["time_s"] >= revoked + 1],
                           30, "decisions without access", report=ctl.report)
        assert all(d["kept"] and not d["actions"] for d in blind), blind
        assert twin.replicas()[H100] == 1
        assert "403" in ctl.text() or "Forbidden" in ctl.text(), ctl.report(60)
        alive_without_traceback(ctl)
    finally:
        rbac = (EXAMPLE / "rbac.yaml").read_text()
        example.kubectl("apply", "-f", "-", stdin=rbac)
    wait_until(lambda: twin.replicas()[H100] == 2, 40, "acting again once access is back",
               report=ctl.report)
    alive_without_traceback(ctl)


# ---------------------------------------------------------------------------------- HPA
def test_an_hpa_on_a_managed_deployment(twin: TwinProc, start: Start,
                                        example: LocalPlane) -> None:
    """An autoscaling/v2 HorizontalPodAutoscaler on the H100 Deployment (min = max = 3: the
    real HPA controller enforces its bounds even without a metrics API) while the static
    policy wants 2. As documented (``outside_writes.hpa: refuse``, the default), the
    controller finds the HPA at start-up, says so, and never scales that Deployment: over
    many decisions ``spec.replicas`` stays the HPA's 3 and nothing of ours writes it."""
    twin.reset(ONE_EACH, timeout_s=60)
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "vllm-h100", "namespace": NAMESPACE},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": twin.deployments[H100]},
                    "minReplicas": 3, "maxReplicas": 3,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization",
                                                  "averageUtilization": 80}}}]}}
    applied = time.time()
    example.kubectl("apply", "-f", "-", stdin=json.dumps(hpa))

    def h100_since_applied() -> list[int]:
        return [int(n) for _, wall_s, n in twin.status()["history"]["replicas"][H100]
                if wall_s >= applied]

    try:
        wait_until(lambda: 3 in h100_since_applied(), 60, "the HPA to scale H100 to 3",
                   interval_s=0.25, report=twin.report)
        ctl = start("hpa", config_for(twin, "hpa-0", policy=STATIC))
        wait_until(lambda: ctl.text().count('"event": "decision"') >= 8, 90,
                   "eight decisions of the controller", interval_s=0.25, report=ctl.report)
        assert "HpaTarget" in ctl.text(), ctl.report()
        values = h100_since_applied()
        assert 2 not in values[values.index(3):], (values, ctl.report())
        assert twin.replicas()[H100] == 3
        assert CONTROLLER_MANAGER not in {
            entry["manager"] for entry in twin.deployment(H100)["metadata"]["managedFields"]
            if '"f:replicas"' in json.dumps(entry.get("fieldsV1") or {})
            and entry.get("time", "") >= time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(applied))}, ctl.report()
        alive_without_traceback(ctl)
    finally:
        example.kubectl("delete", "hpa", "vllm-h100", "-n", NAMESPACE, "--ignore-not-found")


# ---------------------------------------------------------------------------------- the twin
def test_the_attached_twin_creates_missing_pools_and_stops_cleanly(
        example: LocalPlane, tmp_path: Path) -> None:
    """In an empty namespace the attached twin creates the pools' Deployments and Services
    and the HTTPRoute; the real controllers make the Pods, the twin makes them Ready; SIGTERM
    stops it with exit code 0."""
    proc = TwinProc(tmp_path / "twin", plane=example, namespace="twin-empty", route="vllm")
    try:
        assert set(proc.deployments.values()) == set(POOLS)
        wait_until(lambda: all((proc.deployment(pool).get("status") or {}).get(
            "readyReplicas") == 1 for pool in POOLS), 60, "one ready replica per pool",
            report=proc.report)
        assert set(proc.weights()) == set(POOLS)
        nodes = example.get("/api/v1/nodes")["items"]
        allocatable = {n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu")
                       for n in nodes}
        assert allocatable == {"gpu-h100-sxm5-80gb": "4", "gpu-a100-sxm4-80gb": "8",
                               "gpu-l4": "16"}, allocatable
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(timeout=15) == 0, proc.report()
    assert "rlscale twin: stopped" in proc.text()
    example.kubectl("delete", "namespace", "twin-empty", "--wait=false")
