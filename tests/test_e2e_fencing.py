"""End to end: a paused leader writes nothing once it has lost the Lease (issue 13, row 1).

Two real controller processes share a Lease against one twin. They want different H100
replicas (A: 2, B: 3), so every write says who made it. Each round the leader is frozen with
SIGSTOP for longer than the Lease (the follower takes over and writes its own count), then
resumed with SIGCONT: the resumed process must write nothing — no scale to its own count, no
Event under its identity — because it cannot prove it holds the Lease. Roles swap every round;
ten rounds against one twin.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.version_info < (3, 11), reason="the twin needs kmock (Python >= 3.11)"),
]
pytest.importorskip("kmock")
pytest.importorskip("kubernetes")

from e2e_procs import (  # noqa: E402 (after the skips)
    POOLS,
    ControllerProc,
    TwinProc,
    controller_config,
    controller_writes,
    wait_until,
)

H100 = POOLS[0]
WANTS = {"fence-a": 2, "fence-b": 3}
"""H100 replicas each controller's static policy asks for."""
LEASE_S, RENEW_S, RETRY_S = 4.0, 3.0, 0.5
PAUSE_S = LEASE_S + 3.0
"""How long the leader stays frozen: past the Lease's expiry and the follower's takeover."""
ROUNDS = 10


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[TwinProc, dict[str, ControllerProc]]]:
    twin = TwinProc(tmp_path / "twin")
    procs: dict[str, ControllerProc] = {}
    try:
        twin.reset(dict.fromkeys(POOLS, 1), dict.fromkeys(POOLS, 1))
        for name, h100 in WANTS.items():
            static = {"heuristic": "static", "knobs": {"replicas": [h100, 1, 1]}}
            config = controller_config(
                twin, name, policy=static, fallback=static,  # every write names its writer
                # the two undo each other's count on purpose: not outside writes to back off
                outside_writes={"rule": "override"}, staleness_s=30.0)
            config["metrics"]["timeout_s"] = 2.0  # a loaded machine slows the twin's pods
            config["leader_election"].update(name="rlscale-fence", lease_duration_s=LEASE_S,
                                             renew_deadline_s=RENEW_S, retry_period_s=RETRY_S)
            procs[name] = ControllerProc(tmp_path, name, config, twin.kubeconfig)
        for proc in procs.values():
            wait_until(lambda p=proc: p.ready() or not p.alive, 60, f"{proc.name} to serve",
                       report=proc.report)
            assert proc.alive, proc.report()
        yield twin, procs
    finally:
        for proc in procs.values():
            if proc.alive:
                os.killpg(proc.popen.pid, signal.SIGCONT)
            proc.stop(timeout_s=5)
            print(proc.report(40))
        twin.stop()
        print(twin.report(20))


def _holder(twin: TwinProc) -> str | None:
    lease = twin.lease("rlscale-fence") or {}
    holder: str | None = lease.get("spec", {}).get("holderIdentity")
    return holder


def _events_by(twin: TwinProc, identity: str, since_s: float) -> list[str]:
    """Events recorded by ``identity`` after ``since_s`` (names end in hex nanoseconds)."""
    return [e["reason"] for e in twin.events() if e.get("reportingInstance") == identity
            and int(e["metadata"]["name"].rsplit(".", 1)[1], 16) / 1e9 >= since_s]


def test_a_paused_leader_never_writes_after_it_resumes(
        pair: tuple[TwinProc, dict[str, ControllerProc]]) -> None:
    twin, procs = pair
    leader = wait_until(lambda: _holder(twin), 20, "a Lease holder")
    wait_until(lambda: twin.replicas()[H100] == WANTS[leader], 20, "the first leader's scale",
               report=procs[leader].report)
    violations: list[str] = []
    for round_ in range(ROUNDS):
        follower = next(name for name in procs if name != leader)
        paused = procs[leader]
        os.killpg(paused.popen.pid, signal.SIGSTOP)
        stopped = time.time()
        wait_until(lambda f=follower: _holder(twin) == f, LEASE_S + 10, "the takeover",
                   interval_s=0.05, report=procs[follower].report)
        wait_until(lambda f=follower: twin.replicas()[H100] == WANTS[f], 30,
                   "the new leader's scale", interval_s=0.05, report=procs[follower].report)
        time.sleep(max(0.0, stopped + PAUSE_S - time.time()))  # the pause itself (wall time)
        os.killpg(paused.popen.pid, signal.SIGCONT)
        resumed = time.time()
        # a few of its loop intervals and lease ticks: time to write, if it were to
        wait_until(lambda p=paused, t=resumed: sum(d["time_s"] >= t for d in p.decisions())
                   >= 3, 60, "three decisions by the resumed process", report=paused.report)
        stale = [w for w in controller_writes(twin, resumed)
                 if w["name"] == H100 and w["replicas"] == WANTS[leader]]
        events = _events_by(twin, leader, resumed)
        if stale or events or twin.replicas()[H100] != WANTS[follower]:
            violations.append(f"round {round_}: {leader} wrote after SIGCONT: {stale} "
                              f"events {events}, H100 at {twin.replicas()[H100]}")
        assert _holder(twin) == follower
        leader = follower
    assert not violations, "\n".join(violations)
    for proc in procs.values():
        assert proc.alive, proc.report()
        assert "Traceback" not in proc.text(), proc.report(200)
