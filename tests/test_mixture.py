"""Training on a distribution of workloads: draws, load matching, held-out families, the env."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rlscale.configschema import ConfigError
from rlscale.envs import LLMClusterEnv
from rlscale.sim.scenario import load_scenario
from rlscale.sim.workload.config import WorkloadConfigError
from rlscale.sim.workload.mixture import cluster_capacity_rps, parse_mixture, resolve
from rlscale.training.config import load_train_config

DIURNAL = {"generator": {"kind": "diurnal", "mean_rate_per_s": 10,
                         "amplitude": {"uniform": [0.2, 0.8]},
                         "period_s": {"loguniform": [900, 7200]}},
           "lengths": "azure-conv-2023", "max_total_tokens": 8192}
LONG = {"generator": {"kind": "poisson", "rate_per_s": 5},
        "lengths": {"prompt_tokens": 6000, "output_tokens": 200}}


def test_draws_resolve_inside_their_ranges_and_nest() -> None:
    rng = np.random.default_rng(0)
    template = {"a": {"uniform": [1, 2]}, "b": {"loguniform": [10, 1000]},
                "c": {"integers": [3, 4]}, "d": {"choice": ["x", {"uniform": [5, 6]}]},
                "e": [1, {"integers": [7, 7]}], "f": "kept"}
    for _ in range(50):
        value = resolve(template, rng, "t")
        assert 1 <= value["a"] <= 2
        assert 10 <= value["b"] <= 1000
        assert value["c"] in (3, 4)
        assert value["d"] == "x" or 5 <= value["d"] <= 6
        assert value["e"] == [1, 7]
        assert value["f"] == "kept"


@pytest.mark.parametrize(("template", "message"), [
    ({"x": {"uniform": [2, 1]}}, r"t\.x\.uniform: expected \[low, high\]"),
    ({"x": {"uniform": [0, "a"]}}, r"t\.x\.uniform"),
    ({"x": {"loguniform": [0, 1]}}, r"loguniform needs low > 0"),
    ({"x": {"choice": []}}, r"t\.x\.choice: expected a non-empty list"),
])
def test_bad_draws_name_the_field(template: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadConfigError, match=message):
        resolve(template, np.random.default_rng(0), "t")


@pytest.mark.parametrize(("data", "message"), [
    ([], r"workloads: expected a mapping"),
    ({"families": []}, r"workloads\.families: expected a non-empty list"),
    ({"families": [{"name": "a"}]}, r"families\[0\]: expected \{name"),
    ({"families": [{"name": "a", "workload": LONG, "weight": 0}]}, r"\[0\]\.weight"),
    ({"families": [{"name": "a", "workload": LONG}, {"name": "a", "workload": LONG}]},
     r"names must be unique"),
    ({"families": [{"name": "a", "workload": LONG}], "load": 5}, r"workloads\.load"),
    ({"families": [{"name": "a", "workload": LONG}], "load": {"uniform": [0.5, 9]}},
     r"workloads\.load"),
    ({"families": [{"name": "a", "workload": LONG}], "loads": 0.5}, r"unknown key"),
    ({"families": [{"name": "a", "workload": LONG, "offset_range_s": [5, 1]}]},
     r"offset_range_s"),
    ({"families": [{"name": "a", "workload": LONG}], "gpu_shortage": {"probability": 2,
                                                                     "fraction": 0.5}},
     r"gpu_shortage\.probability: expected a number in \[0, 1\]"),
    ({"families": [{"name": "a", "workload": LONG}], "gpu_shortage": {
        "probability": 0.5, "fraction": {"uniform": [0.5, 3]}}},
     r"gpu_shortage\.fraction: expected a fraction"),
    ({"families": [{"name": "a", "workload": LONG}], "gpu_shortage": {"fraction": 0.5}},
     r"gpu_shortage: expected \{probability"),
])
def test_bad_mixtures_are_refused_with_the_field(data: object, message: str) -> None:
    with pytest.raises(WorkloadConfigError, match=message):
        parse_mixture(data)


def test_a_held_out_family_cannot_be_trained_on() -> None:
    data = {"families": [{"name": "long-prompt", "workload": LONG}]}
    with pytest.raises(WorkloadConfigError, match="held out of training"):
        parse_mixture(data, held_out=("long-prompt", "bursty"))


@pytest.mark.parametrize("template", [DIURNAL, LONG])
def test_the_load_is_a_fraction_of_capacity_at_the_familys_own_lengths(
        template: dict[str, object]) -> None:
    scenario = load_scenario("hetero-3pool")
    mixture = parse_mixture({"families": [{"name": "f", "workload": template}], "load": 0.4})
    drawn = mixture.draw(np.random.default_rng(1), 1800.0, scenario.cluster,
                         scenario.slo.itl_s)
    rate = len(drawn.workload) / 1800.0
    capacity = cluster_capacity_rps(scenario.cluster, drawn.workload, scenario.slo.itl_s)
    assert rate == pytest.approx(0.4 * capacity, rel=0.08)
    assert drawn.workload.duration_s <= 1800.0


def test_long_prompts_get_a_lower_request_rate_at_the_same_load() -> None:
    scenario = load_scenario("hetero-3pool")
    rates = {}
    for name, template in (("conv", DIURNAL), ("long", LONG)):
        mixture = parse_mixture({"families": [{"name": name, "workload": template}],
                                 "load": 0.5})
        drawn = mixture.draw(np.random.default_rng(2), 1800.0, scenario.cluster,
                             scenario.slo.itl_s)
        rates[name] = len(drawn.workload) / 1800.0
    assert rates["long"] < rates["conv"] / 3


def test_a_trace_family_replays_windows_inside_its_offset_range(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    times = np.arange(0.0, 3600.0, 0.5)
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{t:.1f},{100 + int(t)},{50}\n" for t in times))
    scenario = load_scenario("hetero-3pool")
    mixture = parse_mixture({"families": [{"name": "tr", "workload": {"trace": str(trace)},
                                           "offset_range_s": [0, 1200]}], "load": 0.3})
    for seed in range(5):
        drawn = mixture.draw(np.random.default_rng(seed), 900.0, scenario.cluster,
                             scenario.slo.itl_s)
        # prompt = 100 + the arrival second on the trace's clock: every request before 2100 s
        assert drawn.workload.prompt_tokens.max() < 100 + 1200 + 900 + 1
    short = parse_mixture({"families": [{"name": "tr", "workload": {"trace": str(trace)},
                                         "offset_range_s": [3000, 3500]}]})
    with pytest.raises(WorkloadConfigError, match="holds no 900 s episode"):
        short.draw(np.random.default_rng(0), 900.0, scenario.cluster, scenario.slo.itl_s)


@pytest.mark.slow
def test_the_env_draws_a_family_per_episode_deterministically() -> None:
    mixture = parse_mixture({"families": [
        {"name": "conv", "workload": DIURNAL, "weight": 3},
        {"name": "long", "workload": LONG, "weight": 1}], "load": {"uniform": [0.2, 0.6]}})
    env = LLMClusterEnv("hetero-3pool", workloads=mixture)
    families: Counter[str] = Counter()
    first = []
    sines = []
    for seed in range(12):
        observation, info = env.reset(seed=seed)
        families[info["family"]] += 1
        first.append(len(env.episode_workload or ()))
        assert info["load_scale"] == 1.0
        assert 0.0 <= env.offset_s < env.config.control.day_length_s
        sines.append(observation[env.observation_names.index("time_of_day_sin")])
    # the clock starts at a uniform time of day: the time entries span their whole range
    assert min(sines) < -0.3, sines
    assert max(sines) > 0.3, sines
    assert set(families) == {"conv", "long"}
    assert families["conv"] > families["long"]
    again = LLMClusterEnv("hetero-3pool", workloads=mixture)
    _, info = again.reset(seed=3)
    assert len(again.episode_workload or ()) == first[3]


def test_a_gpu_shortage_cuts_one_type_and_the_load_follows_what_is_left() -> None:
    """Every episode short (probability 1) of a third of one GPU type: exactly one type is cut,
    never below what its pools' initial and minimum replicas hold; the load is a fraction of
    the cut cluster's capacity; the env runs that cluster and says so in its info; the
    clairvoyant expert plans on it too."""
    scenario = load_scenario("hetero-3pool")
    full = scenario.cluster.gpu_inventory
    mixture = parse_mixture({"families": [{"name": "conv", "workload": DIURNAL}], "load": 0.4,
                             "gpu_shortage": {"probability": 1, "fraction": 0.3}})
    cut_types = set()
    for seed in range(12):
        drawn = mixture.draw(np.random.default_rng(seed), 1800.0, scenario.cluster,
                             scenario.slo.itl_s)
        inventory = drawn.cluster.gpu_inventory
        cut = [t for t in full if inventory[t] != full[t]]
        assert len(cut) <= 1, inventory
        assert all(inventory[t] <= full[t] for t in full), inventory
        for gpu_type in cut:
            held = sum(p.initial_replicas * p.gpus_per_replica for p in scenario.cluster.pools
                       if p.gpu_type == gpu_type)
            assert inventory[gpu_type] == max(held, round(0.3 * full[gpu_type]))
            cut_types.add(gpu_type)
        capacity = cluster_capacity_rps(drawn.cluster, drawn.workload, scenario.slo.itl_s)
        assert len(drawn.workload) / 1800.0 == pytest.approx(0.4 * capacity, rel=0.08)
    assert len(cut_types) >= 2  # the type is drawn
    never = parse_mixture({"families": [{"name": "conv", "workload": DIURNAL}],
                           "gpu_shortage": {"probability": 0, "fraction": 0.3}})
    assert never.draw(np.random.default_rng(0), 1800.0, scenario.cluster,
                      scenario.slo.itl_s).cluster is scenario.cluster
    env = LLMClusterEnv("hetero-3pool", workloads=mixture)
    _, info = env.reset(seed=0)
    assert env.cluster is not None
    assert info["gpu_inventory"] == env.episode_cluster.gpu_inventory != full
    assert env.cluster.gpu_total == env.episode_cluster.gpu_inventory
    assert env.expert_episode().scenario.cluster.gpu_inventory == info["gpu_inventory"]


def test_the_packaged_mixture_loads_by_name_and_every_family_draws() -> None:
    config = load_train_config(overrides=["workloads=generalize"])
    mixture = config.mixture()
    assert mixture is not None
    scenario = load_scenario("hetero-3pool")
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(60):
        drawn = mixture.draw(rng, 1830.0, scenario.cluster, scenario.slo.itl_s)
        assert len(drawn.workload) > 0
        seen.add(drawn.family)
    assert seen == {f.name for f in mixture.families}
    with pytest.raises(ConfigError, match="neither a packaged mixture"):
        load_train_config(overrides=["workloads=nonesuch"])
