"""The shield: one test per rule, on hand-built inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.agents.shield import Shield, ShieldConfig
from rlscale.metrics.intervals import PoolInterval
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
from rlscale.metrics.snapshot import ClusterSnapshot, PoolStatus


def _context() -> PolicyContext:
    pools = (
        PoolInfo("h100", "H100", 1, 4, 256, 6.88, 12.0, 4),
        PoolInfo("a100", "A100", 1, 8, 256, 3.43, 5.0, 8),
    )
    return PolicyContext(ObservationConfig(pools, 2.0, 0.15), (0, 1), 30.0)


def _input(desired: tuple[int, int] = (2, 3), ready: tuple[int, int] = (2, 3),
           starting: tuple[int, int] = (0, 0), free: dict[str, int] | None = None,
           vector: list[float] | None = None) -> PolicyInput:
    names = ("h100", "a100")
    gpus = ("H100", "A100")
    statuses = tuple(PoolStatus(n, d, r, s, 0, 0, 1.0, g, 1) for n, d, r, s, g in zip(
        names, desired, ready, starting, gpus, strict=True))
    used = {g: r + s for g, r, s in zip(gpus, ready, starting, strict=True)}
    free_gpus = free if free is not None else {"H100": 4 - used["H100"], "A100": 8 - used["A100"]}
    snapshot = ClusterSnapshot(0.0, statuses, (), free_gpus)
    intervals = tuple(PoolInterval(n, *([0.0] * 7), *([0.0] * 6), 0.0, 0.0, 0, r, s, 0, 0, 0.5)
                      for n, r, s in zip(names, ready, starting, strict=True))
    return PolicyInput(0.0, np.asarray(vector or [0.5, 0.5], dtype=np.float32), intervals,
                       snapshot, desired)


class _Fixed:
    name = "fixed"

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def reset(self) -> None:
        pass

    def decide(self, observed: PolicyInput) -> Decision:
        return self.decision


class _Broken:
    name = "broken"

    def reset(self) -> None:
        pass

    def decide(self, observed: PolicyInput) -> Decision:
        raise RuntimeError("weights file is garbage")


FALLBACK = Decision((1, 2), (1.0, 1.0), True, "Fallback")


def _shield(**config: object) -> Shield:
    return Shield(_context(), ShieldConfig(**config),  # type: ignore[arg-type]
                  fallback=_Fixed(FALLBACK),
                  observation_range=(np.zeros(2, np.float32), np.ones(2, np.float32)))


@pytest.mark.parametrize(("wanted", "expected", "reason"), [
    ((9, 3), (4, 3), "TooManyReplicas:h100"),
    ((2, 0), (2, 1), "TooFewReplicas:a100"),
])
def test_clamps_to_min_and_max(wanted: tuple[int, int], expected: tuple[int, int],
                               reason: str) -> None:
    result = _shield(max_scale_up=10, max_scale_down=10).apply(
        Decision(wanted, (1.0, 1.0)), _input())
    assert result.decision.replicas == expected
    assert reason in result.interventions


def test_limits_the_step_size() -> None:
    result = _shield(max_scale_up=1, max_scale_down=1).apply(
        Decision((4, 8), (1.0, 1.0)), _input(desired=(2, 3)))
    assert result.decision.replicas == (3, 4)
    assert {"ScaleUpLimit:h100", "ScaleUpLimit:a100"} <= set(result.interventions)
    down = _shield(max_scale_down=1).apply(Decision((0, 1), (1.0, 1.0)), _input(desired=(2, 3)))
    assert down.decision.replicas == (1, 2)


def test_no_scale_down_while_pods_are_pending() -> None:
    observed = _input(desired=(3, 3), ready=(2, 3), starting=(1, 0))
    result = _shield().apply(Decision((1, 2), (1.0, 1.0)), observed)
    assert result.decision.replicas == (3, 2)
    assert "ScaleDownWhilePending:h100" in result.interventions


def test_growth_stays_within_the_gpus_the_cluster_has_now() -> None:
    # A node with 2 H100 was lost: 2 ready, 0 free -> no growth for h100.
    observed = _input(desired=(2, 3), ready=(2, 3), free={"H100": 0, "A100": 5})
    result = _shield().apply(Decision((4, 3), (1.0, 1.0)), observed)
    assert result.decision.replicas == (2, 3)
    assert "GpuInventory:h100" in result.interventions


def test_weights_only_to_pools_with_ready_replicas() -> None:
    observed = _input(desired=(2, 3), ready=(0, 3), starting=(2, 0))
    result = _shield().apply(Decision((2, 3), (1.0, 0.0)), observed)
    assert result.decision.weights == (0.0, 3 * 5.0)
    assert result.interventions == ("NoReadyReplicas:h100", "WeightsByCapacity")


@pytest.mark.parametrize(("vector", "reason"), [
    ([float("nan"), 0.5], "FallbackNaN"),
    ([0.5, 3.0], "FallbackOutOfRange"),
])
def test_unsafe_observations_go_to_the_fallback(vector: list[float], reason: str) -> None:
    result = _shield().decide(_Fixed(Decision((4, 8), (1.0, 1.0))), _input(vector=vector))
    assert result.fallback_used
    assert result.decision.replicas == (1, 2)
    assert result.interventions[0] == reason


def test_within_the_margin_is_still_in_range() -> None:
    result = _shield(range_margin=0.25).decide(_Fixed(Decision((2, 3), (1.0, 1.0))),
                                               _input(vector=[1.2, -0.2]))
    assert not result.fallback_used


def test_invalid_or_failing_policies_fall_back() -> None:
    invalid = _shield().decide(_Fixed(Decision((2, 3), (1.0, 1.0), False, "NoMetrics")), _input())
    assert invalid.fallback_used
    assert invalid.interventions[0] == "FallbackInvalid"
    broken = _shield().decide(_Broken(), _input())
    assert broken.fallback_used
    assert broken.interventions[0] == "FallbackInvalid"
    assert "RuntimeError: weights file is garbage" in broken.decision.message


def test_without_a_fallback_the_current_state_is_kept() -> None:
    shield = Shield(_context())
    result = shield.decide(_Broken(), replace(_input(), vector=np.array([np.nan, 0.0])))
    assert result.decision.replicas == (2, 3)
    assert result.decision.reason == "KeepCurrent"
