"""End to end: the real controller (a separate process) against the twin (another process).

The twin runs the test scenario (``tests/data/twin-step.yaml``: the default scenario's three
pools with short cold starts; 8 req/s, 40 req/s from 120 s to 720 s, then 8 req/s) at 60x
(5x for the shipped policy, whose observations must stay in its training range); the
controller decides every 0.5 s of wall time (30 simulated seconds). The tests read what the
controller did from the twin's Kubernetes API and its ``/twin/status`` (the replica and weight
history, every API write), and the controller's own ``/metrics`` and JSON log. Prometheus runs
for real where installed. One twin serves the tests that need no particular load history.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("kmock")
pytest.importorskip("kubernetes")

from e2e_procs import (  # noqa: E402 (after the skips)
    BUNDLE,
    LIMITS,
    POOLS,
    ControllerProc,
    PrometheusProc,
    TwinProc,
    alive_without_traceback,
    assert_within_limits,
    controller_config,
    controller_writes,
    event_time,
    leader_and_follower,
    prometheus_binary,
    start_controller,
    stop_controllers,
    wait_until,
)

H100, A100, L4 = POOLS
STATIC = {"heuristic": "static", "knobs": {"replicas": [2, 1, 1]}}
"""A policy whose decision is known: 2 H100, 1 A100, 1 L4 replicas."""
ONE_EACH = dict.fromkeys(POOLS, 1)
EVEN = dict.fromkeys(POOLS, 1)

Start = Callable[..., ControllerProc]


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinProc]:
    """One twin at 60x for the tests that reset it to a known state first."""
    proc = TwinProc(tmp_path_factory.mktemp("shared-twin"))
    yield proc
    proc.stop()
    print(proc.report())


@pytest.fixture
def new_twin(tmp_path: Path) -> Iterator[Callable[..., TwinProc]]:
    """Start a twin of the test's own (stopped at teardown, after the controllers: request
    this fixture before ``start``)."""
    made: list[TwinProc] = []

    def make(**kwargs: Any) -> TwinProc:
        proc = TwinProc(tmp_path / f"twin-{len(made)}", **kwargs)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()
        print(proc.report())


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start controllers; each is killed at teardown and its log printed (shown on failure)."""
    started: list[ControllerProc] = []

    def run(name: str, config: dict[str, Any], twin: TwinProc) -> ControllerProc:
        return start_controller(started, tmp_path, name, config, twin.kubeconfig)

    yield run
    stop_controllers(started)


def history(twin: TwinProc) -> tuple[dict[str, list[tuple[float, int]]],
                                     list[tuple[float, dict[str, float]]]]:
    """Replicas per pool and weights, each as (simulated s, value), from /twin/status."""
    status = twin.status()
    replicas = {pool: [(s, int(n)) for s, _, n in entries]
                for pool, entries in status["history"]["replicas"].items()}
    weights = [(s, w) for s, _, w in status["history"]["weights"]]
    return replicas, weights


def peak(entries: list[tuple[float, int]], start_s: float, end_s: float) -> int:
    """The highest value set in [start_s, end_s) (or in force at start_s)."""
    before = [n for s, n in entries if s <= start_s]
    inside = [n for s, n in entries if start_s <= s < end_s]
    return max(before[-1:] + inside)


def first_blind(ctl: ControllerProc, since_s: float) -> dict[str, Any]:
    """Wait for the first decision begun after ``since_s`` (an iteration begun before may
    still have been writing, on the data it had)."""
    decision: dict[str, Any] = wait_until(lambda: next(
        (d for d in ctl.decisions() if d["time_s"] >= since_s), None), 20,
        "a decision after the fault", report=ctl.report)
    return decision



# ---------------------------------------------------------------------------------- 1: load step
def test_a_load_step_scales_the_cheapest_pool_up_then_down_and_routes_to_it(
        new_twin: Callable[..., TwinProc], start: Start) -> None:
    twin = new_twin()
    ctl = start("planner", controller_config(twin, "planner-0"), twin)
    wait_until(lambda: twin.status()["sim_time_s"] >= 700, 40, "the end of the load step",
               interval_s=0.25, report=twin.report)
    replicas, weights = history(twin)
    # the planner fills the cheapest capacity first: H100 (6.88 $/h for 12 req/s) to its
    # max, then A100; L4 (0.80 $/h for 0.75 req/s) costs most per request: never added
    assert peak(replicas[H100], 120, 720) == LIMITS[H100][1], replicas
    assert peak(replicas[A100], 120, 720) >= 2, replicas
    assert peak(replicas[L4], 0, 720) <= 1, replicas
    high = [w for s, w in weights if 180 <= s < 720]
    assert high, weights
    assert max(w[H100] / sum(w.values()) for w in high) > 0.5, weights
    # after the step: back down (the planner removes one replica per pool per decision)
    wait_until(lambda: twin.replicas()[H100] <= 2 and twin.replicas()[A100] <= 2, 40,
               "scale-down after the load step", interval_s=0.25, report=ctl.report)
    assert twin.status()["sim_time_s"] > 720
    assert_within_limits(twin)
    alive_without_traceback(ctl)
    assert ctl.total("rlscale_decisions_total") > 0


# ---------------------------------------------------------------------------------- 2: shadow
def test_shadow_mode_decides_but_writes_nothing(twin: TwinProc, start: Start) -> None:
    twin.reset(ONE_EACH, EVEN)
    deployments = {pool: twin.deployment(pool)["metadata"]["resourceVersion"] for pool in POOLS}
    route = twin.route()["metadata"]["resourceVersion"]
    since = time.time()
    config = controller_config(twin, "shadow-0", mode="shadow", policy=STATIC)
    config["leader_election"]["name"] = "rlscale-shadow"
    ctl = start("shadow", config, twin)
    wait_until(lambda: ctl.total("rlscale_decisions_total") >= 5 * len(POOLS), 30,
               "five shadow decisions", report=ctl.report)
    would = [a for d in ctl.decisions() for a in d["actions"]]
    assert any(a.startswith(f"would scale llm/{H100} 1->2") for a in would), would
    assert ctl.total("rlscale_desired_replicas", pool=H100) == 2
    assert controller_writes(twin, since) == []
    assert twin.replicas() == ONE_EACH
    assert {pool: twin.deployment(pool)["metadata"]["resourceVersion"]
            for pool in POOLS} == deployments
    assert twin.route()["metadata"]["resourceVersion"] == route
    assert twin.lease("rlscale-shadow") is None  # it never campaigned
    alive_without_traceback(ctl)


# ---------------------------------------------------------------------------------- 3: leader

def test_two_controllers_one_acts_and_the_other_takes_over_after_sigkill(
        twin: TwinProc, start: Start) -> None:
    twin.reset(ONE_EACH, EVEN)
    since = time.time()
    procs = {}
    for name in ("ctl-a", "ctl-b"):
        config = controller_config(twin, name, policy=STATIC)
        config["leader_election"]["name"] = "rlscale-pair"
        procs[name] = start(name, config, twin)
    lease_s = procs["ctl-a"].config["leader_election"]["lease_duration_s"]
    retry_s = procs["ctl-a"].config["leader_election"]["retry_period_s"]
    leader, follower = leader_and_follower(twin, procs, "rlscale-pair", H100)
    assert all(not a or a.endswith("(not the leader)") for d in follower.decisions()
               for a in d["actions"])
    events = [e for e in twin.events() if event_time(e) >= since]
    assert events
    assert {e["reportingInstance"] for e in events} == {leader.name}

    last_renew = twin.lease("rlscale-pair")["spec"]["renewTime"]  # type: ignore[index]
    leader.kill()  # SIGKILL: no release of the Lease
    killed = time.monotonic()
    twin.scale(H100, 1)  # someone else changes it; only a leader may put it back
    wait_until(lambda: (twin.lease("rlscale-pair") or {})["spec"]["holderIdentity"]
               == follower.name, lease_s + 4 * retry_s + 5, "the follower to take the Lease",
               interval_s=0.05, report=follower.report)
    took_s = time.monotonic() - killed
    lease = twin.lease("rlscale-pair")
    assert lease is not None
    renewed = datetime.fromisoformat(last_renew.replace("Z", "+00:00")).timestamp()
    acquired = datetime.fromisoformat(
        lease["spec"]["acquireTime"].replace("Z", "+00:00")).timestamp()
    # taken over once the Lease expired: lease_duration_s after the last renewal, plus the
    # polling of both candidates (a loaded machine adds a little)
    assert lease_s <= acquired - renewed <= lease_s + 2 * retry_s + 1.5, (acquired - renewed)
    assert took_s <= lease_s + 2 * retry_s + 2.0, took_s
    print(f"takeover {took_s:.2f} s after the SIGKILL, {acquired - renewed:.2f} s after the "
          f"last renewal (lease {lease_s:g} s, retry {retry_s:g} s)")
    assert lease["spec"]["leaseTransitions"] >= 1
    wait_until(lambda: twin.replicas()[H100] == 2, 20, "the new leader to restore H100",
               report=follower.report)
    wait_until(lambda: any(e["reportingInstance"] == follower.name and event_time(e) >= since
                           for e in twin.events()), 10, "an Event by the new leader")
    assert follower.total("rlscale_is_leader") == 1
    assert_within_limits(twin, since)
    alive_without_traceback(follower)


# ---------------------------------------------------------------------------------- 4: Prometheus
def test_the_load_step_with_prometheus_as_the_metric_source(
        tmp_path: Path, new_twin: Callable[..., TwinProc], start: Start) -> None:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian package prometheus; "
                    ".ci/run installs it)")
    # Prometheus first (it waits for the twin's target file), so that the controller starts
    # well before the load step
    prometheus = PrometheusProc(tmp_path / "prometheus", tmp_path / "twin-0" / "targets.json",
                                binary)
    try:
        twin = new_twin(speed=40.0)
        # one decision per 1.5 s (60 simulated s): Prometheus scrapes every 1 s
        config = controller_config(twin, "prom-0", interval_s=1.5, staleness_s=4.0)
        config["metrics"] = {"source": "prometheus", "url": prometheus.url, "timeout_s": 1.0}
        config["policy"]["knobs"].update(max_scale_down=4)
        ctl = start("prometheus", config, twin)
        series = wait_until(lambda: prometheus.query("vllm:num_requests_running"), 30,
                            "Prometheus to scrape the twin's pods", report=prometheus.report)
        assert {s["metric"]["namespace"] for s in series} == {"llm"}
        assert {s["metric"]["pod"] for s in series} <= set(twin.status()["pods"])
        wait_until(lambda: twin.status()["sim_time_s"] >= 700, 40, "the end of the load step",
                   interval_s=0.25, report=twin.report)
        replicas, _ = history(twin)
        assert peak(replicas[H100], 120, 720) >= 3, replicas
        wait_until(lambda: twin.replicas()[H100] <= 2, 40, "scale-down after the load step",
                   interval_s=0.25, report=ctl.report)
        decisions = ctl.decisions()
        assert any(d["policy"] == "planner" and not d["kept"] for d in decisions)
        assert not any("PrometheusDown" in p for d in decisions for p in d["problems"])
        assert_within_limits(twin)

        # Prometheus goes away: no write while it is gone (missing, then stale metrics)
        prometheus.kill()
        killed = time.time()
        first_blind(ctl, killed)
        down = time.time()
        twin.scale(H100, 4)  # the planner would scale this down at 8 req/s: not blind
        wait_until(lambda: any(d["reason"] == "StaleMetrics" for d in ctl.decisions()
                               if d["time_s"] >= down), 20, "StaleMetrics decisions",
                   report=ctl.report)
        after = [d for d in ctl.decisions() if d["time_s"] >= killed]
        assert {d["reason"] for d in after} <= {"MissingMetrics", "StaleMetrics"}, after
        assert any("PrometheusDown" in p for d in after for p in d["problems"])
        assert all(d["kept"] and not d["actions"] for d in after)
        assert controller_writes(twin, down) == []
        assert twin.replicas()[H100] == 4
        alive_without_traceback(ctl)
    finally:
        prometheus.kill()
        print(prometheus.report(20))


# ---------------------------------------------------------------------------------- 5: faults
def test_api_conflicts_and_server_errors_are_retried(twin: TwinProc, start: Start) -> None:
    twin.reset(ONE_EACH, EVEN)
    # the test undoes the controller's writes itself, to make it write again: not an outside
    # writer to back off from
    config = controller_config(twin, "retry-0", policy=STATIC,
                               outside_writes={"rule": "override"})
    config["leader_election"]["name"] = "rlscale-retry"
    ctl = start("retry", config, twin)
    wait_until(lambda: twin.replicas()[H100] == 2, 20, "the first scale-up", report=ctl.report)

    # three 409 Conflicts: retried with backoff inside one iteration
    since = time.time()
    twin.faults({"api": {"target": "deployments/scale", "status": 409, "count": 3}})
    twin.scale(H100, 1)
    wait_until(lambda: twin.replicas()[H100] == 2, 20, "a scale through three conflicts",
               report=ctl.report)
    statuses = [w["status"] for w in controller_writes(twin, since)
                if w["resource"] == "deployments/scale"]
    assert statuses == [409, 409, 409, 200], statuses

    # more 500s than one iteration's attempts: the iteration gives up, the next one succeeds
    since = time.time()
    twin.faults({"api": {"target": "deployments/scale", "status": 500, "count": 6}})
    twin.scale(H100, 1)
    wait_until(lambda: twin.replicas()[H100] == 2, 30, "a scale after six server errors",
               report=ctl.report)
    statuses = [w["status"] for w in controller_writes(twin, since)
                if w["resource"] == "deployments/scale"]
    assert statuses == [500] * 6 + [200], statuses
    assert ctl.total("rlscale_actuation_errors_total", kind="temporary") >= 1
    assert any(e.startswith("temporary:") for d in ctl.decisions() for e in d["errors"])
    assert_within_limits(twin, since)
    alive_without_traceback(ctl)


def test_a_hung_pod_blocks_scale_down_and_a_dead_api_blocks_every_write(
        twin: TwinProc, start: Start) -> None:
    twin.reset({H100: 2, A100: 1, L4: 1}, EVEN)
    config = controller_config(twin, "faults-0", policy=STATIC, staleness_s=2.0)
    config["leader_election"]["name"] = "rlscale-faults"
    ctl = start("faults", config, twin)
    wait_until(lambda: len(ctl.decisions()) >= 2, 20, "the first decisions", report=ctl.report)

    # one H100 pod's /metrics hangs: partial metrics, the fallback decides, no scale-down
    hung = sorted(pod for pod in twin.status()["endpoints"] if pod.startswith(H100))[0]
    twin.faults({"hang": {"target": hung, "seconds": 30}})
    since = time.time()
    twin.scale(H100, 3)  # the static policy wants 2: a scale-down, not on partial data
    wait_until(lambda: sum(d["reason"] == "PartialMetrics" for d in ctl.decisions()
                           if d["time_s"] >= since) >= 3, 30, "three PartialMetrics decisions",
               report=ctl.report)
    assert twin.replicas()[H100] >= 3  # the fallback may scale up, never down
    lowered = [w for w in controller_writes(twin, since)
               if w["name"] == H100 and w["replicas"] is not None and w["replicas"] < 3]
    assert lowered == []
    partial = [d for d in ctl.decisions() if d["reason"] == "PartialMetrics"]
    assert any(f"ScrapeTimeout[{H100}/{hung}]" in p for d in partial for p in d["problems"])
    assert ctl.total("rlscale_fallbacks_total", reason="PartialMetrics") >= 3
    twin.faults({"clear": True})
    wait_until(lambda: twin.replicas()[H100] == 2, 30, "the scale-down once metrics are back",
               report=ctl.report)

    # the API answers 503 to everything: missing, then stale data; no write is even tried
    twin.faults({"api": {"target": "*", "status": 503, "count": 100_000, "reads": True}})
    injected = time.time()
    first_blind(ctl, injected)
    since = time.time()
    wait_until(lambda: any(d["reason"] == "StaleMetrics" for d in ctl.decisions()
                           if d["time_s"] >= since), 20, "StaleMetrics decisions",
               report=ctl.report)
    attempted = [w for w in controller_writes(twin, since)
                 if w["resource"] in ("deployments/scale", "httproutes")]
    down = [d for d in ctl.decisions() if d["time_s"] >= injected]
    twin.faults({"clear": True})
    assert attempted == []
    # Missing while the last good metrics are fresh, then Stale; whether a MissingMetrics
    # decision shows before staleness_s passes depends on how long the failed reads take.
    assert {d["reason"] for d in down} <= {"MissingMetrics", "StaleMetrics"}, down
    assert "StaleMetrics" in {d["reason"] for d in down}, down
    assert all(d["kept"] and not d["actions"] for d in down), down
    recovered = time.time()
    wait_until(lambda: any(not d["kept"] for d in ctl.decisions()
                           if d["time_s"] >= recovered), 20, "decisions once the API is back",
               report=ctl.report)
    assert_within_limits(twin, since)
    alive_without_traceback(ctl)


def test_a_corrupt_bundle_falls_back_to_the_heuristic(twin: TwinProc, start: Start,
                                                       tmp_path: Path) -> None:
    twin.reset(ONE_EACH, EVEN)
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    weights = bundle / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    since = time.time()
    config = controller_config(twin, "corrupt-0", policy={"bundle": str(bundle)})
    config["leader_election"]["name"] = "rlscale-corrupt"
    ctl = start("corrupt", config, twin)
    wait_until(lambda: len(ctl.decisions()) >= 4, 20, "four decisions", report=ctl.report)
    assert "BundleLoadFailed" in ctl.text()
    decisions = ctl.decisions()
    assert {d["reason"] for d in decisions} == {"BundleLoadFailed"}
    assert {d["policy"] for d in decisions if not d["kept"]} == {"planner"}
    assert any(not d["kept"] for d in decisions)
    assert_within_limits(twin, since)
    alive_without_traceback(ctl)


# ---------------------------------------------------------------------------------- the bundle
def test_the_shipped_policy_drives_the_twin_behind_the_shield(
        new_twin: Callable[..., TwinProc], start: Start) -> None:
    """In real time, so the pods' token rates per wall second are the scenario's: at N times
    real time they read N times higher, beyond the range the policy saw in training, and the
    familiarity gate hands over to the planner (see rlscale/twin/files.py). The controller
    decides every second; its rates are per second whatever the interval."""
    twin = new_twin(speed=1.0)
    config = controller_config(twin, "ppo-0", interval_s=1.0,
                               policy={"bundle": str(BUNDLE)})
    ctl = start("ppo", config, twin)
    wait_until(lambda: len(ctl.decisions()) >= 6, 30, "six decisions", report=ctl.report)
    decisions = ctl.decisions()
    assert "BundleLoadFailed" not in ctl.text()
    by_policy = [d for d in decisions if d["policy"] == "ppo"]
    assert len(by_policy) >= len(decisions) // 2, [d["reason"] for d in decisions]
    assert any(d["actions"] for d in by_policy)
    assert controller_writes(twin, 0.0)
    assert_within_limits(twin)
    alive_without_traceback(ctl)


def test_the_twin_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = TwinProc(tmp_path / "twin")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=15) == 0, proc.report()
    assert "rlscale twin: stopped" in proc.text()
