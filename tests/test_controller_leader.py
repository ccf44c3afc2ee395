"""Leader election on a Lease with two candidates and a fake clock: never two leaders."""

from __future__ import annotations

from typing import Any

import pytest
from controller_fakes import FakeLeases

from rlscale.controller.leader import LeaderElector, micro_time


class Clock:
    """A clock that moves only when told (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _elector(leases: FakeLeases, clock: Clock, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(leases, name="rlscale", namespace="llm", identity=identity,
                         lease_duration_s=15.0, renew_deadline_s=10.0, retry_period_s=2.0,
                         clock=clock, wall=clock, **kw)


def test_two_candidates_one_leader_and_takeover_after_expiry() -> None:
    leases, clock = FakeLeases(), Clock()
    changes: list[tuple[str, bool]] = []
    a = _elector(leases, clock, "a", on_change=lambda v: changes.append(("a", v)))
    b = _elector(leases, clock, "b", on_change=lambda v: changes.append(("b", v)))
    assert a.tick()
    assert not b.tick()
    assert leases.holder() == "a"
    for _ in range(20):  # 40 s of renewals: a stays, b waits
        clock.advance(2.0)
        assert a.tick()
        assert not b.tick()
    assert [a.is_leader, b.is_leader].count(True) == 1
    last_renewal = clock()
    # a crashes (stops ticking): b must wait for the lease to expire, then take over
    took_over_at = None
    while took_over_at is None:
        clock.advance(2.0)
        if b.tick():
            took_over_at = clock()
        assert clock() - last_renewal < 30, "b never took over"
    assert 15.0 <= took_over_at - last_renewal <= 17.0
    lease = leases.leases["llm", "rlscale"]["spec"]
    assert lease["holderIdentity"] == "b"
    assert lease["leaseTransitions"] == 1
    assert lease["renewTime"] == micro_time(took_over_at)
    # a comes back: it sees b's lease and knows it is no longer the leader
    assert a.is_leader  # its own belief until it looks
    clock.advance(2.0)
    assert not a.tick()
    assert b.tick()
    assert changes == [("a", True), ("b", True), ("a", False)]


def test_a_conflicting_write_loses() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _elector(leases, clock, "a"), _elector(leases, clock, "b")
    assert a.tick()
    clock.advance(20.0)  # a is gone; its lease expired for everyone watching
    assert not b.tick()  # b sees the record for the first time: the 15 s start now
    clock.advance(16.0)
    real_replace = leases.replace_namespaced_lease
    raced = {"done": False}

    def replace_after_a_rival(name: str, namespace: str, body: dict[str, Any],
                              **kw: Any) -> dict[str, Any]:
        if not raced["done"]:  # a third candidate writes between b's read and b's write
            raced["done"] = True
            rival = dict(leases.leases[namespace, name])
            rival["spec"] = {**rival["spec"], "holderIdentity": "c"}
            real_replace(name, namespace, rival)
        return real_replace(name, namespace, body, **kw)

    leases.replace_namespaced_lease = replace_after_a_rival  # type: ignore[method-assign]
    assert not b.tick()  # 409 Conflict: c won
    assert leases.holder() == "c"


def test_a_leader_steps_down_when_renewals_fail_past_the_deadline() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _elector(leases, clock, "a"), _elector(leases, clock, "b")
    assert a.tick()
    assert not b.tick()
    renewed_at = clock()
    leases.down = True  # the API server is unreachable for everyone
    stepped_down_at = None
    for _ in range(10):
        clock.advance(2.0)
        if not a.tick() and stepped_down_at is None:
            stepped_down_at = clock()
        assert not b.tick()
    assert stepped_down_at is not None
    assert 10.0 < stepped_down_at - renewed_at <= 12.0  # past renew_deadline_s ...
    assert stepped_down_at - renewed_at < 15.0  # ... before the lease expires for others
    leases.down = False
    clock.advance(2.0)  # b has not seen a change for 20 s: a's lease has expired
    assert b.tick()
    assert not a.tick()


def test_release_lets_the_successor_in_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a, b = _elector(leases, clock, "a"), _elector(leases, clock, "b")
    assert a.tick()
    assert not b.tick()
    a.release()
    assert not a.is_leader
    assert leases.holder() is None
    clock.advance(2.0)
    assert b.tick()


def test_durations_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s"):
        LeaderElector(FakeLeases(), name="x", namespace="y", identity="z",
                      lease_duration_s=10.0, renew_deadline_s=10.0, retry_period_s=2.0)
