"""deploy/: the kustomizations render, validate and agree with the code, without a cluster.

Every kustomization under ``deploy/`` is rendered with ``kubectl kustomize`` (components on top
of the base); built-in kinds are validated with ``kubernetes-validate --strict`` against the
oldest supported and the newest Kubernetes, HTTPRoute and ServiceMonitor against the schemas
in ``tests/data/schemas/``. The RBAC is compared, rule for rule, with
:data:`rlscale.controller.kube.API_CALLS`; the controller's ConfigMap is loaded with the
controller's own loader; the Dockerfiles' paths, users and entry points are compared with the
manifests. The fresh-venv install of the controller image's dependencies is in
``tests/test_deploy_image.py``.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlscale.controller.config import ControllerConfig, load_config
from rlscale.controller.kube import API_CALLS, RbacScope, rbac_rules

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).parent / "data" / "schemas"
KUBECTL = shutil.which("kubectl")

EXAMPLE = "examples/llama3-8b-3pool"
CONTROLLER_SA = {"kind": "ServiceAccount", "name": "rlscale-controller",
                 "namespace": "rlscale-system"}
CONFIG_MAP = "rlscale-controller-config"
CONFIG_KEY = "controller.yaml"
IMAGE_POLICIES = "/opt/rlscale/policies"
"""Where deploy/docker/controller.Dockerfile links the packaged bundles."""
MIN_KUBERNETES = "1.29.0"
"""The oldest Kubernetes the manifests support (Jobs' backoffLimitPerIndex is on from 1.29)."""
CUSTOM_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-gateway.networking.k8s.io-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "servicemonitor-monitoring.coreos.com-v1.json",
}
LOCKED_DOWN_APPS = ("rlscale-controller", "rlscale-train", "rlscale-evaluate")
"""``app.kubernetes.io/name`` of the pods that must run as non-root on a read-only root."""

Manifest = dict[str, Any]
Rendered = dict[str, list[Manifest]]


# ---------------------------------------------------------------------------------- rendering
def _kustomization_dirs(kind: str) -> list[Path]:
    found = []
    for path in sorted(DEPLOY.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind", "Kustomization") == kind:
            found.append(path.parent)
    return found


def _render(directory: Path) -> list[Manifest]:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """Every kustomization's objects, by directory relative to deploy/ (components: on the
    base, keyed ``<component> (on base)``)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    out: Rendered = {}
    for directory in _kustomization_dirs("Kustomization"):
        out[str(directory.relative_to(DEPLOY))] = _render(directory)
    for component in _kustomization_dirs("Component"):
        overlay = tmp_path_factory.mktemp("overlay")
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(DEPLOY / "base", overlay)],
            "components": [os.path.relpath(component, overlay)]}))
        out[f"{component.relative_to(DEPLOY)} (on base)"] = _render(overlay)
    return out


def _name(obj: Manifest) -> str:
    namespace = obj["metadata"].get("namespace")
    return f"{obj['kind']} {namespace + '/' if namespace else ''}{obj['metadata']['name']}"


def _find(docs: list[Manifest], kind: str, name: str | None = None,
          namespace: str | None = None) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def _one(docs: list[Manifest], kind: str, name: str, namespace: str | None = None) -> Manifest:
    found = _find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, found {len(found)}"
    return found[0]


def _config_map(docs: list[Manifest]) -> Manifest:
    found = [d for d in _find(docs, "ConfigMap")
             if d["metadata"]["name"].startswith(CONFIG_MAP + "-")]
    assert len(found) == 1, f"expected one generated ConfigMap {CONFIG_MAP}-<hash>"
    return found[0]


def _load(docs: list[Manifest], tmp_path: Path) -> ControllerConfig:
    """The controller config as a pod reads it: the ConfigMap's file through load_config."""
    path = tmp_path / CONFIG_KEY
    path.write_text(_config_map(docs)["data"][CONFIG_KEY])
    return load_config(path)


def _pod_templates(docs: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, pod template) of every Deployment and Job."""
    for obj in docs:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]


def _app(template: Manifest) -> str:
    return str(template["metadata"]["labels"].get("app.kubernetes.io/name", ""))


def _controller_deployment(docs: list[Manifest]) -> Manifest:
    return _one(docs, "Deployment", "rlscale-controller", "rlscale-system")


def _with_controller(rendered: Rendered) -> list[str]:
    return [k for k, docs in rendered.items() if _find(docs, "Deployment", "rlscale-controller")]


def test_every_kustomization_renders(rendered: Rendered) -> None:
    expected = {"base", EXAMPLE, "jobs", "components/servicemonitor (on base)"}
    assert expected <= set(rendered), f"missing renderings: {expected - set(rendered)}"
    for key, docs in rendered.items():
        names = [_name(d) for d in docs]
        assert names, f"{key} rendered nothing"
        assert len(names) == len(set(names)), f"{key}: an object is defined twice: {names}"


# ---------------------------------------------------------------------------------- schemas
@pytest.mark.slow
@pytest.mark.parametrize("version", [MIN_KUBERNETES, "latest"])
def test_builtin_kinds_validate_strictly(rendered: Rendered, version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    version = kv.latest_version() if version == "latest" else version
    failures = []
    for key, docs in rendered.items():
        for obj in docs:
            if (obj["apiVersion"], obj["kind"]) in CUSTOM_SCHEMAS:
                continue
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as err:
                where = ".".join(str(p) for p in err.path)
                failures.append(f"{key}: {_name(obj)}: {where}: {err.message}")
            except kv.SchemaNotFoundError:
                failures.append(f"{key}: {_name(obj)}: no Kubernetes {version} schema for "
                                f"{obj['apiVersion']} {obj['kind']} (a CRD? add its schema)")
    assert not failures, f"invalid against Kubernetes {version} (strict):\n" + "\n".join(
        failures)


def _strict(schema: Any) -> Any:
    """``schema`` with unknown fields forbidden in every object that lists its properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _custom_validator(api_version: str, kind: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra)")
    schema = json.loads((SCHEMAS / CUSTOM_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft202012Validator(_strict(schema))


def _errors(validator: Any, obj: Manifest) -> list[str]:
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(obj)]


def test_custom_kinds_validate_against_their_crd_schemas(rendered: Rendered) -> None:
    failures, seen = [], set()
    for key, docs in rendered.items():
        for obj in docs:
            if (obj["apiVersion"], obj["kind"]) in CUSTOM_SCHEMAS:
                seen.add(obj["kind"])
                validator = _custom_validator(obj["apiVersion"], obj["kind"])
                failures += [f"{key}: {_name(obj)}: {e}" for e in _errors(validator, obj)]
    assert not failures, "invalid custom objects:\n" + "\n".join(failures)
    assert seen == {"HTTPRoute", "ServiceMonitor"}, f"validated only {seen}"


def test_the_schemas_reject_what_the_api_server_would(rendered: Rendered) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra)")
    route = _one(rendered[EXAMPLE], "HTTPRoute", "vllm-llama3-8b")
    validator = _custom_validator("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert not _errors(validator, route)
    bad: list[tuple[str, Any]] = [
        ("weight above the int32 bound", lambda r: r["spec"]["rules"][0]["backendRefs"][0]
         .update(weight=1_000_001)),
        ("negative weight", lambda r: r["spec"]["rules"][0]["backendRefs"][0]
         .update(weight=-1)),
        ("unknown field", lambda r: r["spec"]["rules"][0].update(weights=[1])),
        ("relative path", lambda r: r["spec"]["rules"][0]["matches"][0]["path"]
         .update(value="v1")),
        ("17 backendRefs", lambda r: r["spec"]["rules"][0].update(
            backendRefs=[{"name": f"s{i}", "port": 8000} for i in range(17)])),
        ("port 0", lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(port=0)),
    ]
    for what, edit in bad:
        broken = copy.deepcopy(route)
        edit(broken)
        assert _errors(validator, broken), f"the HTTPRoute schema accepts a {what}"
    deployment = copy.deepcopy(_controller_deployment(rendered["base"]))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # a typo strict mode sees
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


# ---------------------------------------------------------------------------------- RBAC
def _triples(rules: list[dict[str, list[str]]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule.get("verbs", [])}


EXPECTED: dict[RbacScope, set[tuple[str, str, str]]] = {
    scope: _triples(rbac_rules(scope)) for scope in ("pools", "lease", "cluster")}


def _grants(docs: list[Manifest]) -> dict[str | None, list[dict[str, Any]]]:
    """The rules bound to the controller's service account, by namespace (None: cluster)."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out: dict[str | None, list[dict[str, Any]]] = {}
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any({k: s.get(k) for k in CONTROLLER_SA} == CONTROLLER_SA
                   for s in binding.get("subjects", [])):
            continue
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], namespace if ref["kind"] == "Role" else None,
                          ref["name"]))
        assert role is not None, f"{_name(binding)} binds {ref['kind']} {ref['name']}, which " \
                                 f"the manifests do not define"
        out.setdefault(namespace, []).extend(role["rules"])
    return out


def test_rbac_has_no_wildcards_and_no_broad_roles(rendered: Rendered) -> None:
    used_verbs = {call.verb for call in API_CALLS.values()}
    problems = []
    for key, docs in rendered.items():
        for obj in docs:
            if obj["kind"] in ("Role", "ClusterRole"):
                assert "aggregationRule" not in obj, f"{key}: {_name(obj)} aggregates roles"
                for rule in obj["rules"]:
                    for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                        if "*" in rule.get(field, []) or any("*" in x for x in
                                                             rule.get(field, [])):
                            problems.append(f"{key}: {_name(obj)}: wildcard in {field}")
                    if "nonResourceURLs" in rule:
                        problems.append(f"{key}: {_name(obj)}: nonResourceURLs")
                    extra = set(rule.get("verbs", [])) - used_verbs
                    if extra:
                        problems.append(f"{key}: {_name(obj)}: verbs {sorted(extra)} that the "
                                        f"controller never uses")
                    if rule.get("resourceNames") and {"create", "list", "watch"} & set(
                            rule["verbs"]):
                        problems.append(f"{key}: {_name(obj)}: resourceNames cannot limit "
                                        f"create/list/watch (the rule would deny them)")
            if obj["kind"] in ("RoleBinding", "ClusterRoleBinding") and obj["roleRef"][
                    "name"] in ("cluster-admin", "admin", "edit", "view"):
                problems.append(f"{key}: {_name(obj)} binds {obj['roleRef']['name']}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key", ["base", EXAMPLE])
def test_rbac_grants_exactly_what_the_controller_calls(rendered: Rendered, key: str,
                                                       tmp_path: Path) -> None:
    docs = rendered[key]
    config = _load(docs, tmp_path)
    grants = _grants(docs)
    assert _triples(grants.pop(None, [])) == EXPECTED["cluster"], (
        f"{key}: the ClusterRole should grant exactly API_CALLS of scope 'cluster' "
        f"(rlscale/controller/kube.py): {sorted(EXPECTED['cluster'])}")
    pool_namespaces = {p.namespace for p in config.pools} | (
        {config.httproute.namespace} if config.httproute else set())
    lease = config.leader_election
    has_pools = any(_find(docs, "Deployment", p.deployment, p.namespace) for p in config.pools)
    if has_pools:
        assert pool_namespaces <= set(grants), (
            f"{key}: no Role for the controller in {sorted(pool_namespaces - set(grants))}")
    assert lease.namespace in grants, f"{key}: no Role for the Lease in {lease.namespace}"
    for namespace, rules in grants.items():
        expected = (EXPECTED["pools"] if namespace in pool_namespaces else set()) | (
            EXPECTED["lease"] if namespace == lease.namespace else set())
        assert _triples(rules) == expected, (
            f"{key}: in namespace {namespace} the controller is granted "
            f"{sorted(_triples(rules))}, but calls {sorted(expected)} there "
            f"(rlscale/controller/kube.py API_CALLS)")
        allowed = {
            ("apps", "deployments"): {p.deployment for p in config.pools
                                      if p.namespace == namespace},
            ("apps", "deployments/scale"): {p.deployment for p in config.pools
                                            if p.namespace == namespace},
            ("gateway.networking.k8s.io", "httproutes"): (
                {config.httproute.name} if config.httproute
                and config.httproute.namespace == namespace else set()),
            ("coordination.k8s.io", "leases"): {lease.name},
        }
        for rule in rules:
            if "resourceNames" not in rule:
                continue
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    assert set(rule["resourceNames"]) == allowed.get((group, resource)), (
                        f"{key}: {namespace}: {resource} limited to {rule['resourceNames']}, "
                        f"but the config names {sorted(allowed.get((group, resource), []))}")


def test_api_calls_list_every_kubernetes_call_of_the_controller() -> None:
    client = pytest.importorskip("kubernetes.client", reason="kubernetes (controller extra)")
    methods = {name for api in (client.AppsV1Api, client.CoreV1Api, client.CustomObjectsApi,
                                client.CoordinationV1Api, client.AutoscalingV2Api)
               for name in dir(api)
               if re.match(r"(connect|create|delete|get|list|patch|read|replace)_", name)}
    called: dict[str, str] = {}
    for path in sorted((ROOT / "rlscale" / "controller").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in methods):
                called.setdefault(node.func.attr, f"{path.name}:{node.lineno}")
    missing = {m: where for m, where in called.items() if m not in API_CALLS}
    assert not missing, (f"the controller calls {missing} but rlscale/controller/kube.py "
                         f"API_CALLS (the RBAC's source of truth) does not list them")
    stale = sorted(set(API_CALLS) - set(called))
    assert not stale, f"API_CALLS lists {stale}, which the controller never calls"


# ---------------------------------------------------------------------------------- security
def _effective(pod: Manifest, container: Manifest, key: str) -> Any:
    value = (container.get("securityContext") or {}).get(key)
    return value if value is not None else (pod.get("securityContext") or {}).get(key)


def test_controller_and_job_pods_are_locked_down(rendered: Rendered) -> None:
    checked, problems = set(), []
    for key, docs in rendered.items():
        for workload, template in _pod_templates(docs):
            if _app(template) not in LOCKED_DOWN_APPS:
                continue
            checked.add(_app(template))
            pod = template["spec"]
            where = f"{key}: {_name(workload)}"
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                if pod.get(flag):
                    problems.append(f"{where}: {flag}")
            if any("hostPath" in v for v in pod.get("volumes", [])):
                problems.append(f"{where}: hostPath volume")
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod.get("initContainers", []) + pod["containers"]:
                at = f"{where} container {container['name']}"
                sc = container.get("securityContext") or {}
                if _effective(pod, container, "runAsNonRoot") is not True:
                    problems.append(f"{at}: runAsNonRoot is not true")
                if _effective(pod, container, "runAsUser") in (0, None):
                    problems.append(f"{at}: runAsUser must be a non-zero uid")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{at}: allowPrivilegeEscalation is not false")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{at}: readOnlyRootFilesystem is not true")
                if sc.get("privileged"):
                    problems.append(f"{at}: privileged")
                caps = sc.get("capabilities") or {}
                if caps.get("drop") != ["ALL"] or caps.get("add"):
                    problems.append(f"{at}: capabilities must drop ALL and add none")
                seccomp = _effective(pod, container, "seccompProfile") or {}
                if seccomp.get("type") != "RuntimeDefault":
                    problems.append(f"{at}: seccompProfile is not RuntimeDefault")
                resources = container.get("resources") or {}
                for kind in ("requests", "limits"):
                    if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                        problems.append(f"{at}: needs cpu and memory {kind}")
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
                    problems.append(f"{at}: /tmp must be a writable emptyDir")
    assert checked == set(LOCKED_DOWN_APPS), f"found pods of {checked} only"
    assert not problems, "\n".join(problems)


def _vllm(docs: list[Manifest]) -> list[Manifest]:
    return [w for w, t in _pod_templates(docs) if _app(t) == "vllm"]


def test_vllm_pools_are_gpu_pools_with_health_probes(rendered: Rendered) -> None:
    docs = rendered[EXAMPLE]
    pools = _vllm(docs)
    assert len(pools) >= 2
    products = set()
    for deployment in pools:
        where = _name(deployment)
        assert "replicas" not in deployment["spec"], (
            f"{where}: leave spec.replicas out (the controller or an autoscaler owns it)")
        pod = deployment["spec"]["template"]["spec"]
        products.add(pod["nodeSelector"]["nvidia.com/gpu.product"])
        assert pod.get("automountServiceAccountToken") is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        assert container["image"].startswith("vllm/vllm-openai:")
        assert not container["image"].endswith(":latest"), f"{where}: pin the vLLM image"
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, f"{where}: privilege escalation"
        assert sc["capabilities"]["drop"] == ["ALL"], f"{where}: drop ALL capabilities"
        assert not sc.get("privileged"), f"{where}: privileged"
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"][
            "nvidia.com/gpu"] == 1
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert (get["path"], get["port"]) == ("/health", "http"), f"{where}: {probe}"
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for path in ("/tmp", "/dev/shm", env["HOME"], env["HF_HOME"]):
            assert "emptyDir" in volumes[mounts[path]], f"{where}: {path} must be an emptyDir"
        assert volumes[mounts["/dev/shm"]]["emptyDir"].get("medium") == "Memory"
        services = [s for s in _find(docs, "Service", namespace=deployment["metadata"][
            "namespace"]) if s["spec"]["selector"].items() <= deployment["spec"]["template"][
                "metadata"]["labels"].items()]
        assert len(services) == 1, f"{where}: expected one Service selecting its pods"
        assert services[0]["spec"]["ports"][0]["targetPort"] in ("http", port)
    assert len(products) >= 2, f"the example should mix GPU types, has {products}"


def test_vllm_pools_run_as_non_root(rendered: Rendered) -> None:
    for deployment in _vllm(rendered[EXAMPLE]):
        where = _name(deployment)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert _effective(pod, container, "runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert _effective(pod, container, "runAsUser") not in (0, None), f"{where}: a uid"
        env = {e["name"]: e.get("value") for e in container["env"]}
        # without them getpass.getuser() (torch, triton) fails for a uid not in /etc/passwd
        assert env.get("USER"), f"{where}: set USER"
        assert env.get("LOGNAME"), f"{where}: set LOGNAME"


@pytest.mark.parametrize("key", ["base", EXAMPLE])
def test_only_prometheus_reaches_the_controller_metrics_port(rendered: Rendered,
                                                              key: str) -> None:
    docs = rendered[key]
    (controller,) = [w for w, t in _pod_templates(docs) if _app(t) == "rlscale-controller"]
    labels = controller["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in _find(docs, "NetworkPolicy")
                if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert len(policies) == 1, f"{key}: one NetworkPolicy should select the controller's pods"
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    assert all(set(peer) == {"namespaceSelector"} and peer["namespaceSelector"]["matchLabels"]
               for peer in rule["from"]), f"{key}: from Prometheus' namespace only: {rule}"


def test_controller_deployment_matches_its_config(rendered: Rendered, tmp_path: Path) -> None:
    for key in _with_controller(rendered):
        docs = rendered[key]
        config = _load(docs, tmp_path)
        deployment = _controller_deployment(docs)
        assert deployment["spec"]["replicas"] == 2, f"{key}: two replicas (leader election)"
        assert config.leader_election.enabled
        assert config.leader_election.namespace == deployment["metadata"]["namespace"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == CONTROLLER_SA["name"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == config.http.port, f"{key}: container port != config http.port"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        config_path = Path(container["args"][container["args"].index("--config") + 1])
        volume = volumes[mounts[str(config_path.parent)]]
        assert volume["configMap"]["name"] == _config_map(docs)["metadata"]["name"]
        assert config_path.name == CONFIG_KEY
        service = _one(docs, "Service", "rlscale-controller-metrics", "rlscale-system")
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"][
            "metadata"]["labels"].items()
        for monitor in _find(docs, "ServiceMonitor"):
            assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
                "labels"].items()
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
                p["name"] for p in service["spec"]["ports"]}


# ---------------------------------------------------------------------------------- config
def _packaged(bundle: str) -> Path:
    assert bundle.startswith(IMAGE_POLICIES + "/"), (
        f"policy.bundle {bundle} is not one of the image's bundles under {IMAGE_POLICIES}")
    return ROOT / "rlscale" / "policies" / bundle.removeprefix(IMAGE_POLICIES + "/")


def test_controller_configs_load_and_start_in_shadow_mode(rendered: Rendered,
                                                          tmp_path: Path) -> None:
    from rlscale.controller.policies import build_policy_setup

    keys = _with_controller(rendered)
    assert {"base", EXAMPLE} <= set(keys)
    for key in keys:
        config = _load(rendered[key], tmp_path)
        assert config.mode == "shadow", f"{key}: start in shadow mode; switch to act later"
        assert config.policy.bundle is not None
        bundle = _packaged(config.policy.bundle)
        assert (bundle / "bundle.json").is_file(), f"{key}: no packaged bundle at {bundle}"
        setup = build_policy_setup(replace(config, policy=replace(config.policy,
                                                                  bundle=str(bundle))))
        assert setup.load_error is None, f"{key}: {setup.load_error}"
        assert setup.policy is not None
        assert setup.policy.name == "ppo"
        if key == EXAMPLE:
            assert setup.warnings == (), f"{key}: config and bundle disagree: {setup.warnings}"


def test_example_config_names_the_example_objects(rendered: Rendered, tmp_path: Path) -> None:
    docs = rendered[EXAMPLE]
    config = _load(docs, tmp_path)
    assert config.httproute is not None
    for pool in config.pools:
        deployment = _one(docs, "Deployment", pool.deployment, pool.namespace)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ports = {p["containerPort"] for p in container["ports"]}
        assert config.metrics.port in ports, f"{pool.name}: metrics.port is not vLLM's port"
        product = pod["nodeSelector"][config.gpus.node_label]
        assert pool.profile is not None
        assert config.gpus.gpu_type(product) == pool.profile.gpu_type, (
            f"{pool.name}: node label {product} maps to {config.gpus.gpu_type(product)}, "
            f"not the pool's gpu_type {pool.profile.gpu_type} (gpus.types)")
        assert str(pool.profile.gpus_per_replica) == str(
            container["resources"]["limits"]["nvidia.com/gpu"])
        assert f"--max-num-seqs={pool.profile.max_num_seqs}" in container["args"]
    route = _one(docs, "HTTPRoute", config.httproute.name, config.httproute.namespace)
    refs = [r for rule in route["spec"]["rules"] for r in rule["backendRefs"]]
    assert {r["name"] for r in refs} == set(config.httproute.backends)
    for ref in refs:
        service = _one(docs, "Service", ref["name"], config.httproute.namespace)
        assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}
        pool = next(p for p in config.pools if p.name == config.httproute.backends[ref["name"]])
        deployment = _one(docs, "Deployment", pool.deployment, pool.namespace)
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"][
            "metadata"]["labels"].items(), f"Service {ref['name']} does not select {pool.name}"


# ---------------------------------------------------------------------------------- images
def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def _args(instructions: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for instruction, rest in instructions if instruction == name]


def _user(instructions: list[tuple[str, str]]) -> int:
    (user,) = _args(instructions, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER must be numeric (runAsNonRoot checks it), got {user}"
    assert int(uid) != 0, f"USER must not be root, got {user}"
    return int(uid)


def test_controller_image_matches_the_manifests(rendered: Rendered) -> None:
    dockerfile = DEPLOY / "docker" / "controller.Dockerfile"
    steps = _instructions(dockerfile)
    assert all(re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim( AS \w+)?", f)
               for f in _args(steps, "FROM")), "base images: python:<version>-slim"
    runs = " ".join(_args(steps, "RUN"))
    assert 'pip install ".[controller]"' in runs
    assert "[train" not in runs, "the controller image installs the controller extra only"
    assert not re.search(r"pip install[^&]*\btorch", runs), "no torch in the controller image"
    assert "find_spec('torch') is None" in runs, "the build should prove torch is absent"
    assert IMAGE_POLICIES in runs, f"the bundles should be linked at {IMAGE_POLICIES}"
    assert "hetero-3pool-ppo/bundle.json" in runs, "the build should check the bundle is there"
    assert '"policies/*/*"' in (ROOT / "pyproject.toml").read_text(), (
        "the bundles must stay package data (pyproject.toml)")
    assert json.loads(_args(steps, "ENTRYPOINT")[0]) == ["rlscale"]
    cmd = json.loads(_args(steps, "CMD")[0])
    (exposed,) = _args(steps, "EXPOSE")
    uid = _user(steps)
    for key in _with_controller(rendered):
        deployment = _controller_deployment(rendered[key])
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][:len(cmd)] == cmd, (
            f"{key}: the Deployment's args should start with the image's CMD {cmd}")
        assert pod["securityContext"]["runAsUser"] == uid
        assert {p["containerPort"] for p in container["ports"]} == {int(exposed)}


def test_training_image_matches_the_jobs(rendered: Rendered) -> None:
    dockerfile = DEPLOY / "docker" / "train.Dockerfile"
    steps = _instructions(dockerfile)
    args = dict(a.split("=", 1) for a in _args(steps, "ARG") if "=" in a)
    assert args["TORCH_VERSION"] == "2.13.0"
    assert "torch==2.13.0" in (ROOT / "README.md").read_text(), "README and image agree"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = _args(steps, "RUN")
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    train_step = next(i for i, r in enumerate(runs) if 'pip install ".[train]"' in r)
    assert torch_step < train_step, "CPU torch first, then the train extra"
    env = " ".join(_args(steps, "ENV"))
    assert "HOME=/tmp" in env, "HOME on the jobs' /tmp emptyDir"
    assert "MPLCONFIGDIR=/tmp/" in env, "matplotlib's cache on the jobs' /tmp emptyDir"
    (workdir,) = [w for w in _args(steps, "WORKDIR") if w != "/src"]
    uid = _user(steps)
    docs = rendered["jobs"]
    jobs = _find(docs, "Job")
    assert {j["metadata"]["name"] for j in jobs} == {"rlscale-train", "rlscale-evaluate"}
    (pvc,) = _find(docs, "PersistentVolumeClaim")
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["fsGroup"] == uid, "fsGroup makes the volume writable"
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        claim = volumes[mounts[workdir]]["persistentVolumeClaim"]["claimName"]
        assert claim == pvc["metadata"]["name"]
        out = container["args"][container["args"].index("--out") + 1]
        assert out.startswith(workdir + "/"), f"{_name(job)} writes outside the volume"


def test_dockerignore_lets_the_images_copy_their_sources() -> None:
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    for dockerfile in (DEPLOY / "docker").glob("*.Dockerfile"):
        for copy_args in _args(_instructions(dockerfile), "COPY"):
            if copy_args.startswith("--from"):
                continue
            *sources, _dest = copy_args.split()
            for source in sources:
                assert source.rstrip("/") in kept, f"{dockerfile.name}: .dockerignore drops " \
                                                   f"{source}"
                assert (ROOT / source).exists()


# ---------------------------------------------------------------------------------- jobs
def _job_container(rendered: Rendered, name: str) -> tuple[Manifest, Manifest]:
    job = _one(rendered["jobs"], "Job", name)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return job, container


def test_train_job_runs_one_seed_per_completion_index(rendered: Rendered) -> None:
    from rlscale.train import build_parser
    from rlscale.training.config import load_train_config

    job, container = _job_container(rendered, "rlscale-train")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] >= 2
    env = {e["name"]: e for e in container["env"]}
    assert env["SEED"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert container["args"][0] == "train"
    outs = set()
    for index in range(job["spec"]["completions"]):
        argv = [a.replace("$(SEED)", str(index)) for a in container["args"][1:]]
        args = build_parser().parse_args(argv)
        config = load_train_config(args.config, list(args.overrides))
        assert config.seed == index
        assert args.resume, "--resume lets a retried pod continue from its checkpoint"
        outs.add(str(args.out))
    assert len(outs) == job["spec"]["completions"], "each seed needs its own run directory"


def test_evaluate_job_arguments_parse(rendered: Rendered) -> None:
    pytest.importorskip("gymnasium", reason="rlscale evaluate needs the train extra")
    from rlscale.evaluate.cli import build_parser
    from rlscale.evaluate.policies import DEFAULT_POLICIES, packaged_bundle, parse_policies
    from rlscale.sim.scenario import load_scenario

    _job, container = _job_container(rendered, "rlscale-evaluate")
    assert container["args"][0] == "evaluate"
    args = build_parser().parse_args(container["args"][1:])
    names = {spec.name for spec in parse_policies(args.policies)}
    assert names <= {*DEFAULT_POLICIES, "ppo"}
    pools = [p.name for p in load_scenario(args.scenario).cluster.pools]
    assert "ppo" not in names or packaged_bundle(pools) is not None


# ---------------------------------------------------------------------------------- README
def test_readme_explains_the_deployment() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Deploy to a cluster" in readme
    section = readme.split("## Deploy to a cluster", 1)[1].split("\n## ", 1)[0]
    for word in ("docker build", "docker push", "kubectl apply -k", "shadow", "mode: act",
                 "rollout status"):
        assert word in section, f"the Deploy section should mention {word!r}"
    for path in sorted(set(re.findall(r"\b(deploy/[\w./-]*\w)", section))):
        assert (ROOT / path).exists(), f"README names {path}, which does not exist"
