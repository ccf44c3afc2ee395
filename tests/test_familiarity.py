"""The familiarity gate: unfamiliar traffic goes to the fallback, with hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.agents.familiarity import FamiliarityConfig, FamiliarityGate


def gate(**config: float) -> tuple[FamiliarityGate, list[float]]:
    scores: list[float] = []
    g = FamiliarityGate(lambda v: scores.pop(0), FamiliarityConfig(**config))  # type: ignore[arg-type]
    return g, scores


def test_it_turns_on_above_enter_and_off_only_below_leave() -> None:
    g, scores = gate(enter=1.0, leave=0.5, smoothing=1.0)
    scores.extend([0.4, 0.9, 1.2, 0.8, 0.6, 0.49, 0.7])
    seen = [g.update(np.zeros(3, np.float32)) for _ in range(7)]
    assert seen == [False, False, True, True, True, False, False]


def test_one_odd_decision_does_not_hand_over_control() -> None:
    g, scores = gate(enter=1.1, leave=0.9, smoothing=0.3)
    scores.extend([0.5, 0.5, 2.0, 0.5, 0.5])
    assert not any(g.update(np.zeros(3, np.float32)) for _ in range(5))
    g.reset()
    scores.extend([2.3] * 6)
    assert [g.update(np.zeros(3, np.float32)) for _ in range(6)][-1]


def test_off_never_gates_and_bad_settings_are_refused() -> None:
    g, scores = gate(enter=None)  # type: ignore[arg-type]
    scores.extend([99.0])
    assert not g.update(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="leave <= enter"):
        FamiliarityConfig(enter=0.5, leave=0.9)
    with pytest.raises(ValueError, match="smoothing"):
        FamiliarityConfig(smoothing=0.0)
