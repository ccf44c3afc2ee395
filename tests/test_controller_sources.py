"""Metric sources: Kubernetes state, direct pod scrapes over HTTP, and Prometheus queries.

Pods are served by real HTTP servers on loopback addresses (127.0.0.x) in vLLM's format
(rendered by :func:`render_pod_metrics`); Prometheus by a tiny HTTP server answering canned
JSON built from the same samples.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from controller_fakes import (
    FakeApps,
    FakeCore,
    FakeCustom,
    clients,
    deployment,
    httproute,
    node,
    pod,
    sample,
)
from kubernetes.client import V1LabelSelector, V1LabelSelectorRequirement

from rlscale.controller.cluster_state import ClusterReader, label_selector
from rlscale.controller.pod_scrape import PodScrapeSource
from rlscale.controller.prometheus import PrometheusSource, spellings
from rlscale.controller.resources import GpuConfig, PoolConfig, RouteConfig
from rlscale.controller.sources import CollectedMetrics
from rlscale.metrics.exposition import Spelling, render_pod_metrics
from rlscale.metrics.snapshot import PodSample
from rlscale.metrics.vllm import METRICS

POOLS = (PoolConfig("a", "llm", "vllm-a", 1, 4), PoolConfig("b", "llm", "vllm-b", 0, 4))
ROUTE = RouteConfig("llm", "vllm", {"svc-a": "a", "svc-b": "b"})


# ---------------------------------------------------------------------------------- state
@pytest.mark.parametrize(("pods", "counts"), [
    ([pod("a-0", "vllm-a")], (1, 0, 0, 0)),
    ([pod("a-0", "vllm-a", ready=False)], (0, 1, 0, 0)),
    ([pod("a-0", "vllm-a", phase="Pending", ip=None, ready=False, node=None)], (0, 0, 1, 0)),
    ([pod("a-0", "vllm-a", phase="Pending", ip=None, ready=False)], (0, 1, 0, 0)),
    ([pod("a-0", "vllm-a", terminating=True)], (0, 0, 0, 1)),
    ([pod("a-0", "vllm-a", phase="Succeeded", ready=False)], (0, 0, 0, 0)),
    ([pod("a-0", "vllm-a"), pod("a-1", "vllm-a", ready=False), pod("x-0", "other"),
      pod("a-2", "vllm-a", terminating=True, ready=False)], (1, 1, 0, 1)),
])
def test_pods_are_counted_ready_starting_pending_or_draining(
        pods: list[Any], counts: tuple[int, int, int, int]) -> None:
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a", replicas=3)), FakeCore(pods)))
    state = reader.read_pool(POOLS[0])
    assert (state.ready, state.starting, state.pending, state.draining) == counts
    assert state.desired == 3
    assert all(p.pool == "a" for p in state.pods)


def test_label_selector_with_expressions() -> None:
    selector = V1LabelSelector(match_labels={"app": "vllm", "tier": "gpu"}, match_expressions=[
        V1LabelSelectorRequirement(key="zone", operator="In", values=["a", "b"]),
        V1LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
        V1LabelSelectorRequirement(key="model", operator="Exists")])
    assert label_selector(selector) == "app=vllm,tier=gpu,zone in (a,b),!canary,model"
    with pytest.raises(ValueError, match="empty selector"):
        label_selector(V1LabelSelector())


def test_free_gpus_per_type_from_nodes_and_requests() -> None:
    nodes = [node("n1", "NVIDIA-H100-80GB-HBM3", 8), node("n2", "NVIDIA-H100-80GB-HBM3", 8,
                                                          cordoned=True),
             node("n3", "NVIDIA-A100-SXM4-80GB", 4, ready=False),
             node("n4", "NVIDIA-A100-SXM4-80GB", 4), node("cpu", None, 0)]
    pods = [pod("a-0", "vllm-a", node="n1", gpus=2), pod("a-1", "vllm-a", node="n1", gpus=2),
            pod("a-2", "vllm-a", node=None, phase="Pending", ready=False, gpus=2)]
    others = [pod("train-0", "train", namespace="ml", node="n4", gpus=1),
              pod("done-0", "batch", namespace="ml", node="n1", phase="Succeeded", gpus=8)]
    types = {"NVIDIA-H100-80GB-HBM3": "H100", "NVIDIA-A100-SXM4-80GB": "A100"}
    cluster = GpuConfig(types=types, pod_scope="cluster")
    reader = ClusterReader(clients(FakeApps(), FakeCore(pods, nodes, others)), gpus=cluster)
    assert reader.read(POOLS).free_gpus == {"H100": 4, "A100": 3}
    # by default only the pools' namespace (llm) is listed: train-0 in ml is not seen
    reader = ClusterReader(clients(FakeApps(), FakeCore(pods, nodes, others)),
                           gpus=GpuConfig(types=types))
    assert reader.read(POOLS).free_gpus == {"H100": 4, "A100": 4}


def test_route_weights_default_to_one_and_problems_are_reported() -> None:
    apps = FakeApps(deployment("vllm-a"))
    custom = FakeCustom(httproute({"svc-a": 3, "svc-b": None, "other": 5}))
    core = FakeCore([pod("a-0", "vllm-a")])
    core.fail["list_node"] = [403]
    state = ClusterReader(clients(apps, core, custom), route=ROUTE).read(POOLS)
    assert state.weights == {"a": 3.0, "b": 1.0}
    assert set(state.pools) == {"a"}
    assert state.free_gpus is None
    kinds = {(p.kind, p.severity, p.pool) for p in state.problems}
    assert kinds == {("DeploymentUnavailable", "missing", "b"),
                     ("GpuInventoryUnavailable", "degraded", None)}
    assert "HTTP 404" in str(next(p for p in state.problems if p.pool == "b"))
    custom.fail["get_namespaced_custom_object"] = [500]
    state = ClusterReader(clients(apps, core, custom), route=ROUTE).read(POOLS)
    assert state.weights is None
    assert any(p.kind == "RouteUnavailable" for p in state.problems)


# ---------------------------------------------------------------------------------- scraping
class _PodServer(BaseHTTPRequestHandler):
    pages: dict[str, str | None]
    release: threading.Event

    def do_GET(self) -> None:
        page = self.pages[self.server.server_address[0]]  # type: ignore[index]
        if page is None:  # a hung pod: answer nothing until the test ends
            self.release.wait(5.0)
            return
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def pod_servers() -> Iterator[Callable[[dict[str, str | None]], int]]:
    """Serve pages on loopback addresses, one server per address, all on one port."""
    servers: list[ThreadingHTTPServer] = []
    release = threading.Event()

    def start(pages: dict[str, str | None]) -> int:
        handler = type("Handler", (_PodServer,), {"pages": pages, "release": release})
        for _attempt in range(5):
            port = 0
            started: list[ThreadingHTTPServer] = []
            try:
                for ip in pages:
                    server = ThreadingHTTPServer((ip, port), handler)
                    server.daemon_threads = True
                    port = server.server_address[1]
                    started.append(server)
            except OSError:
                for server in started:
                    server.server_close()
                continue
            for server in started:
                threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
            servers.extend(started)
            return port
        raise RuntimeError("no common free port on the loopback addresses")

    yield start
    release.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def _scrape(pods: list[Any], fetch: Callable[[str, float], str]) -> CollectedMetrics:
    """One collection from pools a (``vllm-a``) and b (``vllm-b``) holding ``pods``."""
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")),
                                   FakeCore(pods)))
    source = PodScrapeSource(reader, fetch=fetch)
    try:
        return source.collect(POOLS, 0.0)
    finally:
        source.close()


def _samples() -> dict[str, PodSample]:
    return {"a-0": sample("a-0", "a", success=40, running=3, waiting=1, kv=0.25),
            "a-1": sample("a-1", "a", success=7, running=1, kv=0.5, ready=False),
            "b-0": sample("b-0", "b", success=12, running=2, waiting=0, kv=0.125),
            "b-1": sample("b-1", "b", success=3)}


def test_pod_scrape_reads_every_spelling_and_reports_a_hung_pod(
        pod_servers: Callable[[dict[str, str | None]], int]) -> None:
    samples = _samples()
    spelling: dict[str, Spelling] = {"a-0": "new", "a-1": "old", "b-0": "underscore"}
    ips = {"a-0": "127.0.0.11", "a-1": "127.0.0.12", "b-0": "127.0.0.13", "b-1": "127.0.0.14"}
    pages: dict[str, str | None] = {
        ips[name]: render_pod_metrics(samples[name], model_name="llama", spelling=spelling[name])
        if name in spelling else None for name in samples}
    port = pod_servers(pages)
    pods = [pod("a-0", "vllm-a", ip=ips["a-0"]),
            pod("a-1", "vllm-a", ip=ips["a-1"], terminating=True),
            pod("a-2", "vllm-a", ip=None, phase="Pending", ready=False, node=None),
            pod("b-0", "vllm-b", ip=ips["b-0"]), pod("b-1", "vllm-b", ip=ips["b-1"])]
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")),
                                   FakeCore(pods)))
    source = PodScrapeSource(reader, port=port, timeout_s=0.3, max_workers=4)
    started = time.monotonic()
    try:
        collected = source.collect(POOLS, 1000.0)
    finally:
        source.close()
    assert time.monotonic() - started < 2.0
    got = {s.pod: s for s in collected.samples}
    assert set(got) == {"a-0", "a-1", "b-0"}  # the hung pod is not counted as idle
    for name in got:
        assert got[name] == samples[name]
    assert got["a-1"].ready is False
    assert [(p.kind, p.severity, p.pod) for p in collected.problems] == [
        ("ScrapeTimeout", "partial", "b-1")]
    assert collected.pools["a"].pending == 1
    assert collected.pools["a"].draining == 1


@pytest.mark.parametrize(("error", "kind"), [
    (ConnectionRefusedError("refused"), "ScrapeFailed"),
    (TimeoutError("timed out"), "ScrapeTimeout"),
    (None, "ParseError"),
])
def test_a_failed_scrape_is_reported_and_a_pool_without_any_metrics_is_missing(
        error: BaseException | None, kind: str) -> None:
    good = render_pod_metrics(_samples()["a-0"], model_name="m")

    def fetch(url: str, timeout_s: float) -> str:
        if "10.0.0.2" not in url:
            return good
        if error is None:
            return "vllm:num_requests_running{engine=\"0\"} 1\n"
        raise error

    pods = [pod("a-0", "vllm-a", ip="10.0.0.1"), pod("b-0", "vllm-b", ip="10.0.0.2")]
    collected = _scrape(pods, fetch)
    assert [s.pod for s in collected.samples] == ["a-0"]
    assert [(p.kind, p.severity, p.pool, p.pod) for p in collected.problems] == [
        (kind, "partial", "b", "b-0"), ("NoPodMetrics", "missing", "b", None)]
    assert "http://10.0.0.2:8000/metrics" in collected.problems[0].message
    assert collected.pools["b"].ready == 1  # read again after the refusal: still listed ready


def test_a_terminating_pod_that_stopped_serving_is_no_gap() -> None:
    pods = [pod("a-0", "vllm-a", ip="10.0.0.1"),
            pod("b-0", "vllm-b", ip="10.0.0.2", terminating=True)]
    page = render_pod_metrics(_samples()["a-0"], model_name="m")

    def fetch(url: str, timeout_s: float) -> str:
        if "10.0.0.2" in url:
            raise ConnectionRefusedError("vLLM has shut its server down")
        return page

    collected = _scrape(pods, fetch)
    assert [(p.kind, p.severity, p.pod) for p in collected.problems] == [
        ("ScrapeFailed", "degraded", "b-0")]


def test_a_starting_pod_without_metrics_is_no_gap() -> None:
    """vLLM serves /metrics only once its model is loaded; a pod that is not ready yet gets no
    traffic from the Service, so its refused scrape is no gap, and a pool whose running pods
    are all starting is not missing."""
    pods = [pod("a-0", "vllm-a", ip="10.0.0.1"),
            pod("a-1", "vllm-a", ip="10.0.0.2", ready=False),
            pod("b-0", "vllm-b", ip="10.0.0.3", ready=False)]
    page = render_pod_metrics(_samples()["a-0"], model_name="m")

    def fetch(url: str, timeout_s: float) -> str:
        if "10.0.0.1" not in url:
            raise ConnectionRefusedError("the model is still loading")
        return page

    collected = _scrape(pods, fetch)
    assert [(p.kind, p.severity, p.pod) for p in collected.problems] == [
        ("ScrapeFailed", "degraded", "a-1"), ("ScrapeFailed", "degraded", "b-0")]


@pytest.mark.parametrize("afterwards", ["deleted", "terminating"])
def test_a_pod_deleted_between_the_list_and_its_scrape_is_no_gap(afterwards: str) -> None:
    """A scale-down can remove a pod after the pods were listed and before its ``/metrics``
    is read (vLLM closes its server on SIGTERM): the pool is read again, the pod counts as
    gone or draining, and the decision is not a fallback for partial metrics."""
    pods = [pod("a-0", "vllm-a", ip="10.0.0.1"), pod("b-0", "vllm-b", ip="10.0.0.2"),
            pod("b-1", "vllm-b", ip="10.0.0.3")]
    core = FakeCore(pods)
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")), core))
    page = render_pod_metrics(_samples()["a-0"], model_name="m")

    def fetch(url: str, timeout_s: float) -> str:
        if "10.0.0.3" in url:  # b-1 is removed while the scrape runs
            core.pods = [p for p in core.pods if p.metadata.name != "b-1"] + (
                [pod("b-1", "vllm-b", ip="10.0.0.3", terminating=True, ready=False)]
                if afterwards == "terminating" else [])
            raise ConnectionRefusedError("vLLM has shut its server down")
        return page

    source = PodScrapeSource(reader, fetch=fetch)
    try:
        collected = source.collect(POOLS, 0.0)
    finally:
        source.close()
    assert collected.with_severity("partial", "missing") == ()
    assert collected.pools["b"].ready == 1
    assert collected.pools["b"].draining == (afterwards == "terminating")
    assert [(p.kind, p.severity, p.pod) for p in collected.problems] == [
        ("ScrapeFailed", "degraded", "b-1")]


# ---------------------------------------------------------------------------------- Prometheus
def _series(samples: dict[str, PodSample], query: str, eval_s: float,
            sample_age_s: dict[str, float]) -> list[dict[str, Any]]:
    """What Prometheus would answer to ``query`` for these pods (plus a pod of another
    Deployment, which the source must ignore)."""
    pods = {**samples, "gone-0": next(iter(samples.values()))}
    out = []
    for canonical, spec in METRICS.items():
        if spellings(spec)[0] not in query and not any(
                n in query for n in spellings(spec, "_bucket") + spellings(spec, "_sum")):
            continue
        field = {"vllm:kv_cache_usage_perc": "kv_cache_usage_perc"}.get(
            canonical, canonical[len("vllm:"):])
        for name, s in pods.items():
            value = getattr(s, field)
            rows: list[tuple[dict[str, str], float]]
            if query.startswith("max by (pod) (timestamp("):
                rows = [({}, eval_s - sample_age_s.get(name, 5.0))]
            elif spec.kind == "histogram" and "_bucket" in query:
                les = [*(repr(e) for e in value.edges), "+Inf"]
                rows = [({"le": le}, c) for le, c in zip(les, value.cumulative, strict=True)]
            elif spec.kind == "histogram":
                rows = [({}, value.sum)]
            else:
                rows = [({}, value)]
            out += [{"metric": {"pod": name, **labels}, "value": [eval_s, str(v)]}
                    for labels, v in rows]
        return out
    raise AssertionError(f"unexpected query {query}")


@pytest.fixture
def prometheus() -> Iterator[tuple[str, dict[str, Any]]]:
    """A fake Prometheus: ``state["answer"](query)`` gives ``(status, body)``."""
    state: dict[str, Any] = {"queries": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)["query"][0]
            state["queries"].append(query)
            status, body = state["answer"](query)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", state
    server.shutdown()
    server.server_close()


def _reader() -> ClusterReader:
    pods = [pod("a-0", "vllm-a"), pod("a-1", "vllm-a", terminating=True),
            pod("b-0", "vllm-b"), pod("b-1", "vllm-b")]
    return ClusterReader(clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")),
                                 FakeCore(pods)))


def test_prometheus_source_rebuilds_the_pod_samples(
        prometheus: tuple[str, dict[str, Any]]) -> None:
    url, state = prometheus
    samples = _samples()
    state["answer"] = lambda q: (200, {"status": "success", "data": {
        "resultType": "vector", "result": _series(samples, q, 2000.0, {})}})
    collected = PrometheusSource(_reader(), url, staleness_s=90).collect(POOLS, 2000.0)
    assert collected.problems == ()
    got = {s.pod: s for s in collected.samples}
    assert got == samples
    assert collected.sample_age_s == 5.0
    kv = next(q for q in state["queries"] if "kv_cache" in q)
    assert kv.startswith("avg by (pod) (vllm:kv_cache_usage_perc{namespace=\"llm\"} or ")
    assert "vllm_gpu_cache_usage_perc{namespace=\"llm\"}" in kv
    itl = next(q for q in state["queries"] if "inter_token" in q and "_bucket" in q)
    assert itl.startswith("sum by (pod, le) (")
    assert "or vllm_time_per_output_token_seconds_bucket{namespace=\"llm\"}" in itl
    assert len(state["queries"]) == 16


def test_prometheus_stale_and_missing_pods_are_reported(
        prometheus: tuple[str, dict[str, Any]]) -> None:
    url, state = prometheus
    samples = _samples()
    del samples["b-1"]
    ages = {"a-0": 300.0, "a-1": 400.0, "b-0": 10.0}
    state["answer"] = lambda q: (200, {"status": "success", "data": {
        "resultType": "vector", "result": _series(samples, q, 2000.0, ages)}})
    collected = PrometheusSource(_reader(), url, staleness_s=90).collect(POOLS, 2000.0)
    assert [s.pod for s in collected.samples] == ["b-0"]
    problems = {(p.kind, p.severity, p.pool, p.pod) for p in collected.problems}
    assert problems == {("StaleSample", "partial", "a", "a-0"),
                        ("StaleSample", "degraded", "a", "a-1"),  # terminating
                        ("StaleMetrics", "stale", "a", None),
                        ("PodNotInPrometheus", "partial", "b", "b-1")}


def test_prometheus_down_or_failing_is_reported_never_zero(
        prometheus: tuple[str, dict[str, Any]]) -> None:
    url, state = prometheus
    state["answer"] = lambda q: (400, {"status": "error", "errorType": "bad_data",
                                       "error": "1:14: parse error"})
    collected = PrometheusSource(_reader(), url).collect(POOLS, 0.0)
    assert collected.samples == ()
    assert {(p.kind, p.severity, p.pool) for p in collected.problems} == {
        ("PrometheusDown", "missing", "a"), ("PrometheusDown", "missing", "b")}
    assert "HTTP 400" in collected.problems[0].message
    assert "bad_data: 1:14: parse error" in collected.problems[0].message

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    collected = PrometheusSource(_reader(), f"http://127.0.0.1:{closed}",
                                 timeout_s=0.5).collect(POOLS, 0.0)
    assert collected.samples == ()
    assert [p.kind for p in collected.problems] == ["PrometheusDown", "PrometheusDown"]
    assert "unreachable" in collected.problems[0].message
