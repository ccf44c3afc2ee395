"""Judging at equal SLO: curves, their frontier, cost at equal SLO with a CI, per-pool sweeps."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from rlscale.evaluate.curves import (
    RunMatrix,
    cost_at,
    equal_slo_ratio,
    frontier,
    geometric_mean,
)
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.report import write_results
from rlscale.evaluate.suite import summary_table
from rlscale.evaluate.sweep import best_setting, neighbours, sweep


def test_frontier_keeps_only_points_nothing_beats() -> None:
    points = frontier([0.90, 0.95, 0.93, 0.99], [10.0, 12.0, 13.0, 20.0])
    assert points == [(0.90, 10.0), (0.95, 12.0), (0.99, 20.0)], "0.93 at 13 is dominated"


def test_cost_at_interpolates_and_refuses_beyond_reach() -> None:
    points = [(0.90, 10.0), (0.95, 12.0), (0.99, 20.0)]
    assert cost_at(points, 0.97) == pytest.approx(16.0)
    assert math.isnan(cost_at(points, 0.50)), "below every point: no setting is as bad"
    assert cost_at(points, 0.8995) == 10.0, "within 0.1 point of the least: compared with it"
    assert math.isnan(cost_at(points, 0.995))
    assert cost_at(points, 0.9905) == 20.0, "within 0.1 point of the best: compared with it"


def _rows(label: str, attainment: list[float], cost: list[float]) -> list[dict[str, Any]]:
    return [{"policy": label, "window": f"w{k}", "seed": 0, "split": "test", "slo_attainment": a,
             "cost_usd": c}
            for k, (a, c) in enumerate(zip(attainment, cost, strict=True))]


def test_cost_at_equal_slo_with_a_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, 8)
    rows = [*_rows("cheap", [0.96] * 8, list(8.0 + noise)),
            *_rows("b:lo", [0.92] * 8, list(9.0 + noise)),
            *_rows("b:hi", [0.98] * 8, list(13.0 + noise))]
    result = equal_slo_ratio(RunMatrix.from_rows(rows), "cheap", ["b:lo", "b:hi"])
    assert result.reached
    expected = 9.0 + (13.0 - 9.0) * 2 / 3 + noise.mean()  # 0.96 lies 2/3 of 0.92 -> 0.98
    assert result.curve_cost_usd == pytest.approx(expected)
    assert result.ratio == pytest.approx((8.0 + noise.mean()) / expected)
    assert result.low <= result.ratio <= result.high
    assert "x [" in result.text()


def test_a_policy_above_every_curve_point_is_unreached() -> None:
    rows = [*_rows("p", [0.999, 0.999], [5.0, 5.0]), *_rows("b", [0.9, 0.9], [1.0, 1.0])]
    result = equal_slo_ratio(RunMatrix.from_rows(rows), "p", ["b"])
    assert not result.reached
    assert math.isnan(result.ratio)
    assert result.text() == "unreached (best 90.0%)"
    assert json.loads(json.dumps(result.__dict__))["reached"] is False  # plain types, as saved


def test_a_policy_below_every_curve_point_has_no_equal_and_counts_as_worse() -> None:
    """Failing the SLO is not "cheaper at equal SLO": a policy that attains less than every
    setting of a baseline is reported below the curve, counted with the families where it is
    worse, and left out of the geometric mean."""
    rows = [*_rows("p", [0.2, 0.25], [1.0, 1.0]), *_rows("b:lo", [0.8, 0.8], [4.0, 4.0]),
            *_rows("b:hi", [0.99, 0.99], [9.0, 9.0])]
    result = equal_slo_ratio(RunMatrix.from_rows(rows), "p", ["b:lo", "b:hi"])
    assert result.below
    assert result.reached
    assert math.isnan(result.ratio)
    assert result.text() == "below (least 80.0%)"
    assert json.loads(json.dumps(result.__dict__))["below"] is True
    fair = equal_slo_ratio(RunMatrix.from_rows(
        [*_rows("q", [0.9, 0.9], [3.0, 3.0]), *rows[2:]]), "q", ["b:lo", "b:hi"])
    table = summary_table({"fam1": {"p": {"b": result}}, "fam2": {"p": {"b": fair}}})
    assert "| p | 0.45x (1 worse: 1 below) |" in table, table


def test_runs_must_be_shared() -> None:
    rows = [*_rows("p", [0.9, 0.9], [1.0, 1.0]), *_rows("b", [0.9], [1.0])]
    with pytest.raises(ValueError, match="every"):
        RunMatrix.from_rows(rows)


def test_geometric_mean_skips_undefined_ratios() -> None:
    assert geometric_mean([0.5, 2.0, math.nan]) == pytest.approx(1.0)
    assert math.isnan(geometric_mean([]))


def test_best_setting_is_the_cheapest_meeting_the_target() -> None:
    summary = {"a": {"slo_attainment": 0.96, "cost_usd": 9.0},
               "b": {"slo_attainment": 0.99, "cost_usd": 8.0},
               "c": {"slo_attainment": 0.90, "cost_usd": 1.0}}
    assert best_setting(summary, ["a", "b", "c"], 0.95) == "b"
    assert best_setting(summary, ["c"], 0.95) == "c"


def test_neighbours_move_one_pool_along_the_grid() -> None:
    moved = neighbours(PolicySpec("kpa", {"target": 64.0}), 1, 3, 1)
    assert [s.knobs["target"] for s in moved] == [[64.0, 32.0, 64.0], [64.0, 96.0, 64.0]]


def test_per_pool_sweep_finds_the_cheaper_per_pool_setting() -> None:
    """A fake cluster where pool 0 is overprovisioned by low targets: the per-pool pass must
    raise pool 0's target alone, keeping attainment."""

    def run(specs: list[PolicySpec], _: str) -> list[dict[str, Any]]:
        rows = []
        for spec in specs:
            target = spec.knobs["target"]
            targets = target if isinstance(target, list) else [target] * 2
            cost = sum(100.0 / t for t in targets)
            attainment = 0.99 if targets[1] <= 64 else 0.80  # only pool 1 matters for the SLO
            rows += _rows(spec.label, [attainment], [cost])
        return rows

    curves = sweep(["kpa"], run, pools=2, target=0.95, radius=8)
    best = curves.best["kpa"]
    assert best == PolicySpec("kpa", {"target": [256.0, 64.0]}).label
    assert len(curves.points["kpa"]) > 8


def test_results_with_numpy_scalars_are_written(tmp_path: Any) -> None:
    """An evaluation's results reach the disk whatever numpy scalar a number ended up as."""
    meta = {"flags": [np.bool_(True), np.float64(0.5), np.int64(3)]}
    write_results(tmp_path, [], [], meta)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["flags"] == [True, 0.5, 3]
