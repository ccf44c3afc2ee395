"""The SLO guard: the outcome it reads, its hysteresis, and what the shield does with it."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.agents.shield import Shield, ShieldConfig, ShieldedPolicy
from rlscale.agents.slo_guard import SloGuard, SloGuardConfig, interval_attainment
from rlscale.configschema import ConfigError
from rlscale.envs import LLMClusterEnv
from rlscale.evaluate.policies import PolicySpec, build_policy
from rlscale.metrics.intervals import PoolInterval
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot, PoolStatus

NAMES = ("h100", "l4")


def _interval(name: str, requests: int, ttft_missed: float, itl_missed: float) -> PoolInterval:
    return PoolInterval(name, *([0.0] * 7), *([0.0] * 6), ttft_missed, itl_missed, requests,
                        2, 0, 0, 0, 0.5)


def _pools(missed: tuple[float, float], requests: tuple[int, int] = (100, 100)
           ) -> tuple[PoolInterval, ...]:
    return tuple(_interval(n, r, m, 0.0) for n, r, m in zip(NAMES, requests, missed,
                                                            strict=True))


def test_attainment_weights_pools_by_requests_and_takes_the_worse_latency() -> None:
    pools = (_interval("h100", 300, 0.10, 0.02), _interval("l4", 100, 0.0, 0.40))
    assert interval_attainment(pools) == pytest.approx(1 - (300 * 0.10 + 100 * 0.40) / 400)


def test_attainment_is_unknown_without_requests_and_ignores_nan() -> None:
    assert interval_attainment(_pools((0.5, 0.5), requests=(0, 0))) is None
    pools = (_interval("h100", 50, math.nan, math.nan), _interval("l4", 50, 0.2, math.nan))
    assert interval_attainment(pools) == pytest.approx(0.9)


def test_turns_on_below_enter_and_off_after_hold_intervals_that_meet_it() -> None:
    guard = SloGuard(SloGuardConfig(enter=0.95, hold=2))
    bad, good = _pools((0.2, 0.0)), _pools((0.0, 0.0))
    assert not guard.update(good)
    assert guard.update(bad)
    assert guard.update(good)          # one good interval is not enough
    assert guard.update(bad)           # a relapse restarts the count
    assert guard.update(good)
    assert guard.update(_pools((0.0, 0.0), requests=(0, 0)))  # no requests: no change
    assert not guard.update(good)
    guard.update(bad)
    guard.reset()
    assert not guard.active


@pytest.mark.parametrize("config", [{"enter": 0.0}, {"enter": 1.5}, {"hold": 0}])
def test_refuses_meaningless_settings(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SLO guard"):
        SloGuardConfig(**config)  # type: ignore[arg-type]


class _Counting:
    """A fixed decision that counts how often it was asked."""

    def __init__(self, name: str, decision: Decision) -> None:
        self.name = name
        self.decision = decision
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def decide(self, observed: PolicyInput) -> Decision:
        self.calls += 1
        return self.decision


def _context() -> PolicyContext:
    pools = (PoolInfo("h100", "H100", 1, 8, 256, 6.88, 12.0, 8),
             PoolInfo("l4", "L4", 1, 8, 256, 1.0, 1.0, 8))
    return PolicyContext(ObservationConfig(pools, 2.0, 0.15), (1, 1), 30.0)


def _input(pools: tuple[PoolInterval, ...]) -> PolicyInput:
    statuses = tuple(PoolStatus(n, 3, 2, 0, 0, 0, 1.0, g, 1)
                     for n, g in zip(NAMES, ("H100", "L4"), strict=True))
    snapshot = ClusterSnapshot(0.0, statuses, (), {"H100": 6, "L4": 6})
    return PolicyInput(0.0, np.zeros(2, np.float32), pools, snapshot, (3, 3))


def _shield(enter: float | None) -> tuple[Shield, _Counting, _Counting]:
    policy = _Counting("ppo", Decision((2, 4), (1.0, 0.1)))
    fallback = _Counting("planner", Decision((5, 2), (1.0, 0.8)))
    config = ShieldConfig(slo_guard=SloGuardConfig(enter=enter, hold=1))
    return Shield(_context(), config, fallback=fallback), policy, fallback


def test_while_the_slo_is_missed_each_pool_gets_at_least_the_fallbacks_replicas() -> None:
    shield, policy, _fallback = _shield(0.95)
    result = shield.decide(policy, _input(_pools((0.3, 0.0))))
    assert result.decision.replicas == (5, 4)       # max of (2, 4) and (5, 2)
    assert result.decision.weights == (1.0, 0.8)    # the fallback's routing
    assert result.decision.reason == "SloGuard"
    assert result.interventions[0] == "SloGuard"
    assert "85.0%" in result.decision.message
    assert not result.fallback_used


def test_when_the_slo_is_met_the_policy_decides_and_the_fallback_still_tracks() -> None:
    shield, policy, fallback = _shield(0.95)
    shield.decide(policy, _input(_pools((0.3, 0.0))))
    result = shield.decide(policy, _input(_pools((0.01, 0.0))))  # hold=1: off again
    assert result.decision.replicas == (2, 4)
    assert result.decision.weights == (1.0, 0.1)
    assert "SloGuard" not in result.interventions
    assert fallback.calls == 2
    assert policy.calls == 2


def test_off_when_switched_off_and_without_a_fallback() -> None:
    missed = _input(_pools((0.5, 0.5)))
    shield, policy, fallback = _shield(None)
    assert shield.decide(policy, missed).decision.replicas == (2, 4)
    assert fallback.calls == 0
    bare = Shield(_context(), ShieldConfig(slo_guard=SloGuardConfig(enter=0.95)))
    assert bare.guard is None
    assert bare.decide(policy, missed).decision.replicas == (2, 4)


def test_an_invalid_fallback_leaves_the_policys_decision() -> None:
    shield, policy, fallback = _shield(0.95)
    fallback.decision = replace(fallback.decision, valid=False, reason="NoMetrics")
    result = shield.decide(policy, _input(_pools((0.3, 0.0))))
    assert result.decision.replicas == (2, 4)


def test_a_decision_for_the_wrong_number_of_pools_falls_back_while_guarding() -> None:
    shield, policy, fallback = _shield(0.95)
    policy.decision = Decision((2, 4, 1), (1.0, 0.1, 0.5))
    result = shield.decide(policy, _input(_pools((0.3, 0.0))))
    assert fallback.calls == 1  # asked once per decision, so its own state stays right
    assert result.fallback_used
    assert result.interventions[0] == "FallbackInvalid"
    assert result.decision.replicas == (5, 2)


def test_the_evaluations_ppo_policy_is_guarded_by_default_and_the_knob_is_checked() -> None:
    context = LLMClusterEnv("hetero-3pool").policy_context()
    default = build_policy(PolicySpec("ppo"), context)
    assert isinstance(default, ShieldedPolicy)
    assert default.shield.guard is not None
    assert default.shield.guard.config == SloGuardConfig()
    off = build_policy(PolicySpec("ppo", {"guard": "off"}), context)
    assert isinstance(off, ShieldedPolicy)
    assert off.shield.guard is None
    for value, message in (("on", "could not convert"), (1.5, "in (0, 1], got 1.5")):
        with pytest.raises(ConfigError, match=rf"ppo: guard=.*{re.escape(message)}"):
            build_policy(PolicySpec("ppo", {"guard": value}), context)
