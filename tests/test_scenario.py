"""Scenario files: the built-ins load and run; a wrong field gets an error that names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rlscale.configschema import ConfigError
from rlscale.sim.scenario import (
    DEFAULT_SCENARIO,
    builtin_scenario_names,
    load_scenario,
    scenario_from_dict,
)


def test_builtin_scenarios_include_the_three_presets() -> None:
    assert {"single-pool", "hetero-3pool", "70b-tp"} <= set(builtin_scenario_names())
    assert DEFAULT_SCENARIO == "hetero-3pool"


@pytest.mark.parametrize("name", ["single-pool", "hetero-3pool", "70b-tp"])
def test_builtin_scenario_loads_and_draws_its_workload(name: str) -> None:
    scenario = load_scenario(name)
    workload = scenario.build_workload(np.random.default_rng(0))
    rate = len(workload) / workload.duration_s
    assert 5 < rate < 100, f"{name}: unexpected mean rate {rate:.1f} req/s"
    assert int((workload.prompt_tokens + workload.output_tokens).max()) <= 8192


def test_hetero_3pool_has_three_gpu_types_with_limited_inventory() -> None:
    scenario = load_scenario("hetero-3pool")
    gpu_types = {pool.gpu_type for pool in scenario.cluster.pools}
    assert len(gpu_types) == 3
    prices = sorted(pool.gpu_price for pool in scenario.cluster.pools)
    assert prices[0] < prices[1] < prices[2]
    for pool in scenario.cluster.pools:
        assert pool.max_replicas * pool.gpus_per_replica <= scenario.cluster.gpu_inventory[
            pool.gpu_type]


def _raw(name: str) -> dict[str, Any]:
    text = (Path(__file__).resolve().parents[1] / "rlscale" / "scenarios" / f"{name}.yaml")
    data: dict[str, Any] = yaml.safe_load(text.read_text())
    return data


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["pools"][1].update(max_replicas=-2),
     "scenario.pools[1].max_replicas: expected an integer in [0, 10000], got -2"),
    (lambda d: d["pools"][0].update(replicas=3),
     "scenario.pools[0]: unknown field(s) ['replicas']"),
    (lambda d: d["pools"][0].update(profile="llama-9b_tpu"), "scenario.pools[0].profile: unknown "
                                                              "profile 'llama-9b_tpu'"),
    (lambda d: d["slo"].update(ttft_s="fast"),
     "scenario.slo.ttft_s: expected a number, got 'fast'"),
    (lambda d: d.pop("gpus"), "gpu_inventory has no entry for GPU type"),
    (lambda d: d["pools"][0]["engine"].update(max_num_seqs=0) if "engine" in d["pools"][0]
     else d["pools"][0].update(engine={"max_num_seqs": 0}),
     "scenario.pools[0].engine.max_num_seqs: expected an integer in [1, inf], got 0"),
    (lambda d: d["pools"][0].update(engine={"kv_block": 16}),
     "scenario.pools[0].engine: unknown field(s) ['kv_block']"),
    (lambda d: d.update(slo_ttft=1), "scenario: unknown field(s) ['slo_ttft']"),
    (lambda d: d["pools"][2].update(initial_replicas=40),
     "scenario.pools[2].initial_replicas: expected an integer in [0, 16], got 40"),
])
def test_a_wrong_field_is_named(edit: Any, message: str) -> None:
    data = _raw("hetero-3pool")
    edit(data)
    with pytest.raises(ConfigError) as caught:
        scenario_from_dict(data, "edited.yaml")
    assert message in str(caught.value)


def test_engine_settings_override_the_profile_like_vllm_flags() -> None:
    data = _raw("single-pool")
    data["pools"][0]["engine"] = {"max_num_seqs": 64, "max_num_batched_tokens": 8192,
                                  "enable_chunked_prefill": False, "gpu_memory_utilization": 0.8}
    profile = scenario_from_dict(data).cluster.pools[0].profile
    assert (profile.max_num_seqs, profile.max_num_batched_tokens) == (64, 8192)
    assert profile.enable_chunked_prefill is False
    default = load_scenario("single-pool").cluster.pools[0].profile
    assert profile.kv_capacity_tokens < default.kv_capacity_tokens


def test_a_missing_scenario_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(bad)
