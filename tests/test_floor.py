"""The clairvoyant cost floor: the exact cheapest schedule, and running it in the simulator."""

from __future__ import annotations

import pytest

from rlscale.envs.splits import Window
from rlscale.evaluate.floor import FloorPool, solve_floor
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.runner import Task, run_task


def _pool(**changes: object) -> FloorPool:
    values: dict[str, object] = {
        "capacity_rps": 5.0, "price_per_replica_hour": 120.0, "lead_intervals": 2,
        "min_replicas": 0, "max_replicas": 10, "ready": 1, "gpu_type": "a",
        "gpus_per_replica": 1}
    values.update(changes)
    return FloorPool(**values)  # type: ignore[arg-type]


def test_replicas_start_one_lead_ahead_of_the_load_and_stop_after_it() -> None:
    # 60 s intervals at $120/h: one replica-interval costs $2.
    schedule = solve_floor([5, 5, 5, 5, 15, 15, 5, 5], [_pool()], {"a": 10}, 60.0)
    billed = [step[0] for step in schedule.replicas]
    assert billed == [1, 1, 3, 3, 3, 3, 1, 1], "3 replicas billed 2 intervals before the peak"
    assert schedule.cost_usd == pytest.approx(2.0 * sum(billed))
    assert schedule.bound_usd == pytest.approx(schedule.cost_usd)
    assert max(schedule.short_rps) == 0.0


def test_the_cheaper_capacity_is_used_and_inventory_is_shared() -> None:
    cheap = _pool(capacity_rps=10.0, price_per_replica_hour=120.0, lead_intervals=0, ready=0)
    dear = _pool(capacity_rps=10.0, price_per_replica_hour=360.0, lead_intervals=0, ready=0)
    schedule = solve_floor([30.0], [cheap, dear], {"a": 2}, 60.0)
    assert schedule.replicas == ((2, 0),), "both pools hold GPUs of type a; 2 in all"
    assert schedule.short_rps[0] == pytest.approx(10.0), "the third 10 req/s cannot be served"


def test_load_before_the_lead_time_can_only_use_ready_replicas() -> None:
    schedule = solve_floor([20.0, 20.0, 20.0], [_pool(ready=2, lead_intervals=1)], {"a": 10},
                           60.0)
    assert schedule.short_rps[0] == pytest.approx(10.0)
    assert schedule.short_rps[1] == 0.0


@pytest.mark.slow
def test_the_floor_runs_in_the_simulator_and_is_cheaper_than_the_lookahead() -> None:
    window = Window("w", 9101, 0.0)
    floor = run_task(Task("hetero-3pool", PolicySpec("floor"), window, 0, "test"))
    lookahead = run_task(Task("hetero-3pool", PolicySpec("lookahead"), window, 0, "test"))
    assert floor["requests"] == lookahead["requests"] > 40_000
    assert floor["cost_usd"] < lookahead["cost_usd"]
    assert floor["reasons"].get("Clairvoyant", 0) >= 55
    assert 0.5 < floor["slo_attainment"] <= 1.0, "measured, whatever it is"
