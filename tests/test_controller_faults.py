"""The fault matrix of issue 13: each fault the controller once mishandled, reproduced.

Every test here failed before the hardening (fencing, steady clock, plausibility screen, scrape
deadlines, outside writers, bounds on input) and passes after. The end-to-end pause/resume
test against the twin is in ``tests/test_e2e_fencing.py``.

=====  =====================================================================  ===============
row    fault                                                                  test
=====  =====================================================================  ===============
1      leader paused mid-iteration, resumed after another took the Lease      ``*_paused_*``
2      two controllers from one config without ``identity``                   ``*_identity*``
3      the wall clock steps back 120 s                                        ``*_wall_clock*``
4      one scrape reports ``request_success_total`` = 1e15, then falls back   ``*_absurd_counter*``
5      ``num_requests_waiting`` = 1e12 on one pod                             ``*_absurd_queue*``
6      only ``prompt_tokens_total`` decreases                                 ``*_one_series*``
7      one pod's ``/metrics`` drips 1 byte at a time                          ``*_dripping_*``
8      ``kubectl scale`` by hand; an HPA on a pool's Deployment                ``*_outside_*``
9      a backendRef removed while its desired weight is 0                     ``*_backend_ref*``
10     ``max_replicas: 1e12``, a huge rate, a trace with a 1e300 s gap         ``*_absurd_input*``
11     ``controller --once`` with the API down                                ``*_api_down*``
12     ``controller --mode shadow`` takes the Lease from the acting one       ``*_shadow_*``
13     ``evaluate`` with a bad bundle leaves ``tuned.json`` behind             ``*_evaluate_*``
=====  =====================================================================  ===============
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from controller_fakes import (
    FakeApps,
    FakeCore,
    FakeCustom,
    FakeLeases,
    clients,
    deployment,
    httproute,
    node,
    pod,
    sample,
)
from kubernetes.client import V1ManagedFieldsEntry
from test_controller_loop import Recorder, Source, Wants, collected, config_data, make_loop

import rlscale.controller.cli as cli
from rlscale.configschema import ConfigError
from rlscale.controller.actuator import FencedError, KubernetesActuator, RetryPolicy
from rlscale.controller.clocks import SteadyClock
from rlscale.controller.cluster_state import ClusterReader
from rlscale.controller.config import parse_config
from rlscale.controller.leader import LeaderElector
from rlscale.controller.loop import ControlLoop
from rlscale.controller.observability import ControllerMetrics, EventRecorder
from rlscale.controller.pod_scrape import PodScrapeSource
from rlscale.controller.policies import TrackedPolicy, build_policy_setup
from rlscale.controller.resources import PoolConfig, RouteConfig
from rlscale.metrics.exposition import render_pod_metrics
from rlscale.metrics.intervals import interval_stats
from rlscale.metrics.snapshot import ClusterSnapshot, PoolStatus
from rlscale.sim.workload import TraceFormatError, WorkloadConfigError, read_trace
from rlscale.sim.workload.config import workload_from_config


class Clock:
    """A clock that moves only when told (seconds)."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------------------- row 1
def test_a_paused_leader_that_lost_the_lease_mid_iteration_writes_nothing() -> None:
    """The process held the Lease when the iteration began, was paused while collecting
    (SIGSTOP), and another candidate took the Lease meanwhile: the write is not sent."""
    config = parse_config(config_data())
    holds = {"lease": True}

    def paused_while_collecting(t: float) -> Any:
        holds["lease"] = False  # the pause outlived the Lease; nobody told this process yet
        return collected(t)

    setup = build_policy_setup(config)
    setup.policy = TrackedPolicy(Wants((3, 1), (3.0, 1.0)))
    actuator = Recorder()
    loop = ControlLoop(config, Source(paused_while_collecting), setup, actuator=actuator,
                       metrics=ControllerMetrics(), is_leader=lambda: holds["lease"])
    record = loop.run_once(30.0)
    assert actuator.writes == []
    assert record.actions == ()
    assert record.errors
    assert record.errors[0].startswith("fenced:")
    assert loop.metrics.value("rlscale_actuation_errors_total", kind="fenced") == 1


def test_a_paused_leader_cannot_prove_its_lease_on_the_monotonic_clock() -> None:
    leases, mono, wall = FakeLeases(), Clock(100.0), Clock(1_700_000_000.0)
    a = LeaderElector(leases, name="rlscale", namespace="llm", identity="a",
                      lease_duration_s=15.0, renew_deadline_s=10.0, retry_period_s=2.0,
                      clock=mono, wall=wall)
    assert a.tick()
    assert a.holds_lease()
    mono.t += 9.0
    assert a.holds_lease()  # within renew_deadline_s of the last renewal
    mono.t += 2.0  # paused: no renewal for 11 s; the flag is stale, the fence is not
    wall.t -= 3600.0  # a wall-clock step changes nothing
    assert a.is_leader
    assert not a.holds_lease()


def test_the_actuator_sends_nothing_without_the_lease_even_between_retries() -> None:
    apps = FakeApps(deployment("vllm-a", replicas=2))
    apps.fail["patch_namespaced_deployment_scale"] = [503]
    holds = iter([True, False])  # the Lease is lost during the backoff after a 503
    actuator = KubernetesActuator(clients(apps), retry=RetryPolicy(attempts=3),
                                  sleep=lambda s: None, fence=lambda: next(holds))
    with pytest.raises(FencedError, match="cannot prove it holds the Lease"):
        actuator.scale("llm", "vllm-a", 3)
    assert len(apps.called("patch_namespaced_deployment_scale")) == 1  # the 503 only
    assert apps.deployments["llm", "vllm-a"].spec.replicas == 2


# ---------------------------------------------------------------------------------- row 2
def test_two_controllers_from_one_config_without_identity_have_one_leader() -> None:
    data = config_data(leader_election={"name": "rlscale"})
    config = parse_config(data)
    leases = FakeLeases()
    fake = clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")), FakeCore(),
                   FakeCustom(httproute({"svc-a": 1, "svc-b": 1})), leases)
    one, two = cli.build_controller(config, fake), cli.build_controller(config, fake)
    assert one.elector is not None
    assert two.elector is not None
    assert one.elector.identity != two.elector.identity
    results = [one.elector.tick(), two.elector.tick(), one.elector.tick(), two.elector.tick()]
    assert results == [True, False, True, False]
    assert [one.elector.holds_lease(), two.elector.holds_lease()] == [True, False]


# ---------------------------------------------------------------------------------- row 3
def test_a_wall_clock_step_back_changes_no_rate_and_no_readiness() -> None:
    """Pods complete 20 requests per 30 s of real (monotonic) time; the wall clock steps
    back 120 s between two iterations."""
    config = parse_config(config_data())
    mono, wall = Clock(1000.0), Clock(1_700_000_000.0)
    started = mono.t
    policy = Wants()

    def script(t: float) -> Any:
        return collected(30.0 * round((mono.t - started) / 30.0) + 30.0)

    setup = build_policy_setup(config)
    setup.policy = TrackedPolicy(policy)
    loop = ControlLoop(config, Source(script), setup, actuator=Recorder(),
                       metrics=ControllerMetrics(), clock=SteadyClock(wall, mono))
    for step in range(4):
        if step == 2:
            wall.t -= 120.0
        loop.run_once(loop.clock())
        assert loop.ready() == (True, "ok")
        mono.t += 30.0
        wall.t += 30.0
    rates = [s.arrival_rps for seen in policy.seen[1:] for s in seen.pools if s.pool == "a"]
    assert rates == pytest.approx([20 * 2 / 30.0] * 3), rates  # 2 pods x 20 per 30 s


# ---------------------------------------------------------------------------------- rows 4-5
def _one_pod_reads(t: float, **absurd: Any) -> Any:
    """The standard collection at ``t`` with the first pod of pool a changed."""
    base = collected(t)
    bad = replace(base.samples[0], **absurd)
    return replace(base, samples=(bad, *base.samples[1:]))


def test_an_absurd_counter_is_left_out_and_its_return_is_no_restart() -> None:
    config = parse_config(config_data())
    policy = Wants((3, 1))  # would scale a up if it decided
    scripts = {60.0: {"request_success_total": 10**15}}
    loop, actuator = make_loop(
        config, lambda t: _one_pod_reads(t, **scripts.get(t, {})), policy=policy)
    first = loop.run_once(30.0)
    assert first.replicas == {"a": 3, "b": 1}
    actuator.writes.clear()
    spike = loop.run_once(60.0)  # 1e15 requests in 30 s
    assert spike.reason == "PartialMetrics"
    assert any("ImplausibleMetrics[a/a-0]" in p and "request_success_total" in p
               for p in spike.problems), spike.problems
    back = loop.run_once(90.0)  # the counter is back to its real value: not a restart
    assert not any("ImplausibleMetrics" in p for p in back.problems)
    for before, after in zip(loop.lookback.history, loop.lookback.history[1:], strict=False):
        for stats in interval_stats(before, after, loop.lookback.builder.config):  # type: ignore[union-attr]
            assert stats.arrival_rps < 10.0, stats
    assert ("scale", "vllm-a", 4) not in actuator.writes


def test_an_absurd_waiting_queue_is_left_out_and_scales_nothing_up() -> None:
    config = parse_config(config_data())
    loop, actuator = make_loop(config, lambda t: _one_pod_reads(t, num_requests_waiting=10**12),
                               policy=Wants((3, 1)))
    record = loop.run_once(30.0)
    assert any("ImplausibleMetrics[a/a-0]" in p and "num_requests_waiting" in p
               for p in record.problems), record.problems
    assert record.reason == "PartialMetrics"
    assert record.replicas == record.current  # the fallback, without scale-down: no scale-up
    assert not [w for w in actuator.writes if w[0] == "scale"]
    assert all(s.pod != "a-0" for s in loop.lookback.history[-1].pods)


# ---------------------------------------------------------------------------------- row 6
def test_one_decreasing_series_is_no_restart_of_the_pod() -> None:
    config = parse_config(config_data())
    observation = build_policy_setup(config).observation
    assert observation is not None
    statuses = (PoolStatus("a", 1, 1, 0, 0, 0, 1.0, "H100", 1),
                PoolStatus("b", 0, 0, 0, 0, 0, 1.0, "A100", 1))
    old = sample("a-0", "a", success=10_000)
    new = replace(sample("a-0", "a", success=10_020), prompt_tokens_total=5)
    before = ClusterSnapshot(0.0, statuses, (old,), {})
    after = ClusterSnapshot(30.0, statuses, (new,), {})
    (a, _b) = interval_stats(before, after, observation)
    assert a.arrival_rps == pytest.approx(20 / 30.0)
    assert a.completions_rps == pytest.approx(20 / 30.0)
    assert a.generation_tokens_per_s == pytest.approx(200 * 20 / 30.0)
    assert a.prompt_tokens_per_s == pytest.approx(5 / 30.0)  # that series alone was reset


# ---------------------------------------------------------------------------------- row 7
class _Pods:
    """vLLM ``/metrics`` served on 127.0.0.x:port; ``drip`` names pods that answer one byte
    every 0.1 s (each read succeeds well within any per-read timeout)."""

    def __init__(self, names: list[str]) -> None:
        self.drip: set[str] = set()
        self.servers = []
        self.ips = {name: f"127.0.0.{10 + i}" for i, name in enumerate(names)}
        self.port = 0
        self.stop = threading.Event()
        for name, ip in self.ips.items():
            server = ThreadingHTTPServer((ip, self.port), self._handler(name))
            server.daemon_threads = True
            self.port = server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def _handler(self, name: str) -> type[BaseHTTPRequestHandler]:
        pods = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = render_pod_metrics(sample(name, "a", success=5), model_name="m").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name not in pods.drip:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    if pods.stop.wait(0.1):
                        return
                    try:
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up on it
                        return

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.stop.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def pods() -> Iterator[_Pods]:
    served = _Pods(["a-0", "a-1", "a-2", "a-3"])
    yield served
    served.close()


def test_a_dripping_pod_affects_only_its_own_samples(pods: _Pods) -> None:
    listed = [pod(name, "vllm-a", ip=ip) for name, ip in pods.ips.items()]
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a", replicas=4)), FakeCore(listed)))
    source = PodScrapeSource(reader, port=pods.port, timeout_s=0.5, max_workers=2)
    pools = [PoolConfig("a", "llm", "vllm-a", 1, 4)]
    pods.drip.add("a-0")
    try:
        for _ in range(4):  # before: per-read timeouts never fire; the pool fills up
            started = time.monotonic()
            got = source.collect(pools, 0.0)
            took = time.monotonic() - started
            assert sorted(s.pod for s in got.samples) == ["a-1", "a-2", "a-3"], got.problems
            assert [(p.kind, p.pod) for p in got.problems] == [("ScrapeTimeout", "a-0")]
            assert took < 2.0, took
        pods.drip.clear()  # it recovers: read again at once
        got = source.collect(pools, 0.0)
        assert sorted(s.pod for s in got.samples) == ["a-0", "a-1", "a-2", "a-3"], got.problems
    finally:
        source.close()


# ---------------------------------------------------------------------------------- row 8
def test_an_outside_scale_is_reported_and_left_alone_for_the_back_off() -> None:
    """The controller scaled a to 3; someone runs ``kubectl scale --replicas=1``."""
    core = FakeCore()
    config = parse_config(config_data(outside_writes={"back_off_s": 120}))
    shown = {"a": 2}
    manager = {"a": None}

    def script(t: float) -> Any:
        base = collected(t, desired=(shown["a"], 1))
        state = replace(base.pools["a"], replicas_manager=manager["a"])
        return replace(base, pools={**base.pools, "a": state})

    loop, actuator = make_loop(config, script, policy=Wants((3, 1)),
                               events=EventRecorder(core, instance="c-0", now=lambda: 0.0))
    loop.run_once(30.0)
    assert actuator.writes[0] == ("scale", "vllm-a", 3)
    shown["a"] = 3  # our write shows
    assert not any(a.startswith("scale") for a in loop.run_once(60.0).actions)
    shown["a"], manager["a"] = 1, "kubectl"  # someone else's
    actuator.writes.clear()
    record = loop.run_once(90.0)
    assert actuator.writes == [] or all(w[0] != "scale" for w in actuator.writes)
    assert any(a.startswith("held scale llm/vllm-a 1->3") for a in record.actions), record
    assert any("OutsideWrite[a]" in p and "by kubectl" in p for p in record.problems)
    assert [e["reason"] for e in core.events if e["type"] == "Warning"] == ["OutsideWrite"]
    assert loop.metrics.value("rlscale_outside_writes_total", target="replicas") == 1
    assert not any(w[0] == "scale" for w in actuator.writes)
    loop.run_once(180.0)  # still inside the 120 s back-off
    assert not any(w[0] == "scale" for w in actuator.writes)
    loop.run_once(211.0)  # the back-off is over: managed again from what it is
    assert ("scale", "vllm-a", 3) in actuator.writes


def test_the_outside_writer_is_named_from_managed_fields() -> None:
    from datetime import datetime, timezone

    created = deployment("vllm-a")
    created.metadata.managed_fields = [
        V1ManagedFieldsEntry(manager="kubectl-client-side-apply", operation="Update",
                             time=datetime(2025, 1, 1, tzinfo=timezone.utc),
                             fields_v1={"f:spec": {"f:replicas": {}, "f:template": {}}}),
        V1ManagedFieldsEntry(manager="kubectl", operation="Update", subresource="scale",
                             time=datetime(2025, 1, 2, tzinfo=timezone.utc),
                             fields_v1={"f:spec": {"f:replicas": {}}}),
        V1ManagedFieldsEntry(manager="kube-controller-manager", operation="Update",
                             subresource="status", time=datetime(2025, 1, 3, tzinfo=timezone.utc),
                             fields_v1={"f:status": {"f:replicas": {}}})]
    reader = ClusterReader(clients(FakeApps(created)))
    assert reader.read_pool(PoolConfig("a", "llm", "vllm-a", 1, 4)).replicas_manager == "kubectl"


def test_an_outside_scale_is_overridden_when_the_rule_says_so() -> None:
    config = parse_config(config_data(outside_writes={"rule": "override"}))
    shown = {"a": 2}
    loop, actuator = make_loop(config, lambda t: collected(t, desired=(shown["a"], 1)),
                               policy=Wants((3, 1)))
    loop.run_once(30.0)
    shown["a"] = 1
    record = loop.run_once(60.0)
    assert any("OutsideWrite[a]" in p for p in record.problems)
    assert actuator.writes.count(("scale", "vllm-a", 3)) == 2


def test_a_deployment_an_hpa_targets_is_never_scaled_by_the_controller() -> None:
    class Hpas:
        def list_namespaced_horizontal_pod_autoscaler(self, namespace: str, **kw: Any) -> Any:
            return {"items": [{"metadata": {"name": "vllm-a-hpa"}, "spec": {
                "scale_target_ref": {"kind": "Deployment", "name": "vllm-a"}}}]}

    apps = FakeApps(deployment("vllm-a", replicas=2), deployment("vllm-b", replicas=1))
    core = FakeCore(nodes=[node("n-0", "H100", 8), node("n-1", "A100", 8)])
    fake = replace(clients(apps, core, FakeCustom(httproute({"svc-a": 1, "svc-b": 1}))),
                   autoscaling=Hpas())
    config = parse_config(config_data(policy={"heuristic": "static",
                                              "knobs": {"replicas": [3, 2]}}))
    controller = cli.build_controller(config, fake)
    record = controller.loop.run_once(30.0)
    assert apps.scaled() == [("vllm-b", 2)], record
    assert any(a.startswith("held scale llm/vllm-a") and "vllm-a-hpa" in a
               for a in record.actions), record.actions


# ---------------------------------------------------------------------------------- row 9
def test_a_missing_backend_ref_is_reported_even_when_its_weight_is_zero() -> None:
    route = RouteConfig("llm", "vllm", {"svc-a": "a", "svc-b": "b"})
    reader = ClusterReader(clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")),
                                   FakeCore(), FakeCustom(httproute({"svc-a": 1}))), route=route)
    state = reader.read([PoolConfig("a", "llm", "vllm-a", 1, 4),
                         PoolConfig("b", "llm", "vllm-b", 0, 4)])
    assert state.weights == {"a": 1.0, "b": 0.0}
    missing = [p for p in state.problems if p.kind == "BackendRefMissing"]
    assert missing, state.problems
    assert "svc-b" in missing[0].message


# ---------------------------------------------------------------------------------- row 10
@pytest.mark.parametrize(("change", "field"), [
    ({"max_replicas": 10**12}, "pools[0].max_replicas"),
    ({"capacity_rps": 1e300}, "pools[0].capacity_rps"),
])
def test_absurd_input_in_the_controller_config_names_the_field(change: dict[str, Any],
                                                                 field: str) -> None:
    data = config_data()
    data["pools"][0].update(change)
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)


def test_absurd_input_in_a_scenario_names_the_field(tmp_path: Path) -> None:
    from rlscale.sim.scenario import load_scenario

    text = (Path(__file__).parent / "data" / "twin-step.yaml").read_text()
    data = yaml.safe_load(text)
    data["pools"][0]["max_replicas"] = 10**12
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"pools\[0\]\.max_replicas"):
        load_scenario(path)


@pytest.mark.parametrize(("rate", "duration", "field"), [
    (1e300, 60.0, "generator.rate_per_s"), (1.0, 1e300, "workload.duration_s")])
def test_absurd_rates_and_durations_in_a_workload_name_the_field(
        rate: float, duration: float, field: str) -> None:
    config = {"generator": {"kind": "poisson", "rate_per_s": rate},
              "lengths": {"prompt_tokens": 10, "output_tokens": 10}, "duration_s": duration}
    with pytest.raises(WorkloadConfigError, match=field):
        workload_from_config(config, np.random.default_rng(0))


def test_absurd_input_a_trace_with_a_huge_gap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,10\n1e300,10,10\n")
    with pytest.raises(TraceFormatError, match=r"timestamp.*span"):
        read_trace(path)


# ---------------------------------------------------------------------------------- rows 11-12
def _write_config(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(config_data(
        leader_election={"name": "rlscale", "namespace": "llm"}, **overrides)))
    return path


def test_once_exits_non_zero_when_the_api_is_down(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    apps = FakeApps(deployment("vllm-a"), deployment("vllm-b"))
    apps.fail["read_namespaced_deployment"] = [503] * 10
    leases = FakeLeases()
    leases.down = True
    fake = clients(apps, FakeCore(), FakeCustom(httproute({"svc-a": 1, "svc-b": 1})), leases)
    monkeypatch.setattr(cli, "load_clients", lambda _path: fake)
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    code = cli.main(["--config", str(_write_config(tmp_path)), "--once"])
    out = json.loads(capsys.readouterr().out)
    assert out["kept"]
    assert out["reason"] == "MissingMetrics"
    assert code == cli.ONCE_UNDECIDED != 0


def test_shadow_mode_never_campaigns_for_the_lease(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A shadow controller next to the acting one (same Lease name, the usual way to try a
    policy) must not take the Lease: the acting one would become a follower and stop
    scaling."""
    leases = FakeLeases()
    fake = clients(FakeApps(deployment("vllm-a"), deployment("vllm-b")), FakeCore(),
                   FakeCustom(httproute({"svc-a": 1, "svc-b": 1})), leases)
    monkeypatch.setattr(cli, "load_clients", lambda _path: fake)
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    cli.main(["--config", str(_write_config(tmp_path)), "--once", "--mode", "shadow"])
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "shadow"
    assert out["leader"] is False
    assert not out["kept"]
    assert not leases.called("create_namespaced_lease")
    assert not leases.called("replace_namespaced_lease")
    assert leases.holder() is None


# ---------------------------------------------------------------------------------- row 13
def test_evaluate_writes_nothing_when_a_bundle_is_bad(tmp_path: Path) -> None:
    from rlscale.evaluate.cli import main as evaluate

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{not json")
    out = tmp_path / "out"
    code = evaluate(["--policies", f"static,ppo:bundle={bundle}", "--seeds", "0",
                     "--workers", "1", "--out", str(out), "--quiet", "--no-plots"])
    assert code == 2
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert not {"tuned.json", "results.csv", "results.json", "results.md"} & set(written), written


