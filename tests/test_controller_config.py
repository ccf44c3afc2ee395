"""The controller's YAML: a full example loads; every bad field is refused by name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_fakes import clients

from rlscale.agents.slo_guard import SloGuardConfig
from rlscale.configschema import ConfigError
from rlscale.controller.cli import main
from rlscale.controller.config import LIMITS, load_config, parse_config
from rlscale.controller.resources import PROFILE_FIELDS
from rlscale.metrics.observation_config import PoolInfo

EXAMPLE = """
interval_s: 30
staleness_s: 90
mode: act
slo: {ttft_s: 2.0, itl_s: 0.15}
pools:
  - {name: h100, namespace: llm, deployment: vllm-h100, min_replicas: 1, max_replicas: 4,
     gpu_type: H100, gpus_per_replica: 1, max_num_seqs: 256, price_per_replica_hour: 6.88,
     capacity_rps: 12.0, gpu_inventory: 4}
  - {name: a100, namespace: llm, deployment: vllm-a100, min_replicas: 0, max_replicas: 8,
     gpu_type: A100, gpus_per_replica: 1, max_num_seqs: 256, price_per_replica_hour: 3.43,
     capacity_rps: 5.0, gpu_inventory: 8}
httproute:
  namespace: llm
  name: vllm
  backends: {vllm-h100: h100, vllm-a100: a100}
policy: {heuristic: planner, knobs: {headroom: 0.3}}
fallback: {heuristic: hpa, knobs: {target: 0.6}}
shield: {max_scale_up: 3, max_scale_down: 1}
metrics: {source: pods, port: 8000, path: /metrics, timeout_s: 1.5}
gpus: {types: {NVIDIA-H100-80GB-HBM3: H100, NVIDIA-A100-SXM4-80GB: A100}}
leader_election: {name: rlscale, lease_duration_s: 15, renew_deadline_s: 10,
                  retry_period_s: 2, identity: controller-0}
http: {port: 9090}
"""


def example() -> dict[str, Any]:
    """The example as parsed YAML (a fresh copy)."""
    return copy.deepcopy(yaml.safe_load(EXAMPLE))


def test_the_example_loads_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert config.pool_names == ("h100", "a100")
    assert config.interval_s == 30
    assert config.staleness_s == 90
    assert config.mode == "act"
    assert config.policy.heuristic == "planner"
    assert config.policy.knobs == {"headroom": 0.3}
    assert config.fallback.heuristic == "hpa"
    assert config.httproute is not None
    assert config.httproute.services_of("a100") == (
        "vllm-a100",)
    assert config.shield.max_scale_up == 3
    assert config.shield.max_scale_down == 1
    assert config.gpus.gpu_type("NVIDIA-H100-80GB-HBM3") == "H100"
    assert config.gpus.gpu_type("L4") == "L4"
    assert config.leader_election.namespace == "llm"  # the first pool's namespace
    assert config.leader_election.identity == "controller-0"
    assert config.http.port == 9090
    assert config.metrics.timeout_s == 1.5
    observation = config.observation_config()
    assert observation.pools[1].capacity_rps == 5.0
    assert observation.slo_itl_s == 0.15


def test_defaults_and_a_bundle_without_profile_facts() -> None:
    data = {"pools": [{"name": "p", "namespace": "ns", "deployment": "d", "min_replicas": 1,
                       "max_replicas": 3}],
            "policy": {"bundle": "/policies/ppo"}}
    config = parse_config(data)
    assert config.staleness_s == 3 * config.interval_s == 90
    assert config.metrics.source == "pods"
    assert config.metrics.port == 8000
    assert config.fallback.heuristic == "planner"
    assert config.httproute is None
    assert not config.has_profiles
    assert config.slo is None
    assert config.leader_election.enabled
    assert config.leader_election.identity == ""  # resolved per process at start-up


def test_the_slo_guard_is_on_by_default_and_can_be_switched_off() -> None:
    data = example()
    assert parse_config(data).shield.slo_guard == SloGuardConfig(enter=0.9, hold=4)
    data["shield"]["slo_guard"] = {"enter": 0.8, "hold": 2}
    assert parse_config(data).shield.slo_guard == SloGuardConfig(enter=0.8, hold=2)
    data["shield"]["slo_guard"] = False
    assert parse_config(data).shield.slo_guard.enter is None


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with ``...`` delete) the value at a dotted path with list indices."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        data = data[key]
    if value is ...:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


@pytest.mark.parametrize(("path", "value", "message"), [
    ("pools", [], "pools: at least one pool"),
    ("pools.1.max_replicas", 0, "pools[1].max_replicas: expected an integer in [1"),
    ("pools.0.min_replicas", 5, "pools[0].max_replicas: expected an integer in [5"),
    ("pools.0.capacity_rps", ..., "pools[0].capacity_rps: required field is missing"),
    ("pools.0.capacity_rps", 0, "pools[0].capacity_rps: pool 'h100': capacity_rps must be > 0"),
    ("pools.1.deployment", ..., "pools[1].deployment: required field is missing"),
    ("pools.1.name", "h100", "pools[1].name: pool name 'h100' is used twice"),
    ("pools.0.replicas", 3, "pools[0]: unknown field(s) ['replicas']"),
    ("intervall_s", 10, "config: unknown field(s) ['intervall_s']"),
    ("interval_s", 0, "interval_s: expected a number > 0"),
    ("mode", "yolo", "mode: expected one of ['act', 'shadow']"),
    ("slo", ..., "slo: required field is missing"),
    ("slo.itl_s", "fast", "slo.itl_s: expected a number"),
    ("metrics", {"source": "prometheus"}, "metrics.url: required field is missing"),
    ("metrics", {"source": "prometheus", "url": "prometheus:9090"}, "metrics.url: expected"),
    ("metrics", {"source": "graphite"}, "metrics.source: expected one of ['pods'"),
    ("metrics.port", 70000, "metrics.port: expected an integer in [1, 65535]"),
    ("metrics.path", "metrics", "metrics.path: must start with '/'"),
    ("httproute.backends", {"vllm-h100": "h100", "vllm-x": "nope"},
     "httproute.backends.vllm-x: pool 'nope' is not one of the pools"),
    ("httproute.backends", {"vllm-h100": "h100"}, "httproute.backends: no backendRef for pool"),
    ("httproute.name", ..., "httproute.name: required field is missing"),
    ("policy", {"heuristic": "planner", "bundle": "/b"}, "policy.bundle: give exactly one"),
    ("policy", {}, "policy.bundle: give exactly one"),
    ("policy", {"heuristic": "magic"}, "policy.heuristic: unknown baseline 'magic'"),
    ("policy.knobs", {"headroom": 0.2, "turbo": 1}, "policy.knobs: unknown knob(s) ['turbo']"),
    ("policy", {"bundle": "/b", "knobs": {"x": 1}}, "policy.knobs: knobs apply to a heuristic"),
    ("fallback.heuristic", "nope", "fallback.heuristic: unknown baseline 'nope'"),
    ("shield.max_scale_up", 0, "shield.max_scale_up: expected an integer in [1"),
    ("shield.slo_guard", {"enter": 0}, "shield.slo_guard.enter: expected a number > 0"),
    ("shield.slo_guard", {"enter": 1.5}, "shield.slo_guard.enter: expected a number > 0 and <= 1"),
    ("shield.slo_guard", {"hold": 0}, "shield.slo_guard.hold: expected an integer in [1"),
    ("shield.slo_guard", {"entr": 0.9}, "shield.slo_guard: unknown field(s) ['entr']"),
    ("shield.slo_guard", "on", "shield.slo_guard: expected a mapping"),
    ("leader_election.renew_deadline_s", 20, "leader_election.renew_deadline_s: must be below"),
    ("leader_election.retry_period_s", 10, "leader_election.retry_period_s: must be below"),
    ("http.port", -1, "http.port: expected an integer in [0, 65535]"),
    ("gpus.types", {"NVIDIA-H100": 3}, "gpus.types.NVIDIA-H100: expected a GPU type name"),
])
def test_config_errors_name_the_field(path: str, value: Any, message: str) -> None:
    data = example()
    _set(data, path, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert message in str(caught.value)


@pytest.mark.parametrize("key", PROFILE_FIELDS)
def test_every_profile_fact_is_pool_infos_and_bounded_above(key: str) -> None:
    """The config's profile facts are :class:`PoolInfo`'s fields, read into one: an absurd
    value of any numeric one is refused by name (a new PoolInfo field needs its LIMITS)."""
    config = parse_config(example())
    assert config.pools[0].pool_info() == PoolInfo(
        "h100", "H100", 1, 4, 256, 6.88, 12.0, 4)
    if isinstance(getattr(config.pools[0].pool_info(), key), str):
        return
    data = example()
    data["pools"][0][key] = LIMITS[key] * 10
    with pytest.raises(ConfigError, match=rf"pools\[0\]\.{key}: expected"):
        parse_config(data)


def test_a_bundle_with_some_profile_facts_needs_all_of_them() -> None:
    data = example()
    data["policy"] = {"bundle": "/policies/ppo"}
    del data["pools"][1]["gpu_inventory"]
    with pytest.raises(ConfigError, match=r"pools\[1\]\.gpu_inventory: required field is "
                                          r"missing \(profile facts are given for some pool"):
        parse_config(data)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="config: expected a mapping"):
        load_config(listed)


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = example()
    data["pools"][0]["max_replicas"] = "four"
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "pools[0].max_replicas: expected an integer, got 'four'" in err


def test_a_bad_knob_value_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import rlscale.controller.cli as cli

    monkeypatch.setattr(cli, "load_clients", lambda _path: clients())
    data = example()
    data["policy"]["knobs"] = {"headroom": -1.0}
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--config", str(path), "--once"]) == 2
    assert "policy: planner: headroom must be > -1, got -1.0" in capsys.readouterr().err
