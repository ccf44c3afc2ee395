"""Scenarios: a cluster, its SLO and its workload, from a YAML file users can copy and edit.

Built-in scenarios live in ``rlscale/scenarios/*.yaml``; ``load_scenario`` takes a built-in name or
a path. Every field is validated when the file is read, and an error names the field::

    scenario.pools[1].max_replicas: expected an integer in [0, 10000], got -2

Sections other components own (``control``, ``reward``, ``episode``, ``faults``, ``splits``) are
kept as raw mappings in :attr:`Scenario.sections` and validated by those components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlscale.configschema import MAX_REPLICAS, ConfigError, Section
from rlscale.sim.profile import ColdStart, ProfileError, load_profile
from rlscale.sim.spec import SLO, ClusterSpec, PoolSpec
from rlscale.sim.workload import Workload, workload_from_config

DEFAULT_SCENARIO = "hetero-3pool"
OWNED_ELSEWHERE = ("control", "reward", "episode", "faults", "splits", "tuning", "engine")
ENGINE_SETTINGS = {
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "gpu_memory_utilization": float,
    "kv_block_size": int,
    "max_model_len": int,
    "enable_chunked_prefill": bool,
}


@dataclass(frozen=True)
class Scenario:
    """A named, validated scenario.

    Attributes:
        name: scenario name. description: one paragraph for humans.
        cluster: pools, GPU inventory, gateway settings.
        slo: per-request TTFT and inter-token latency thresholds.
        workload: the workload mapping (see :func:`rlscale.sim.workload.workload_from_config`),
            built per seed by :meth:`build_workload`.
        seed: default seed.
        base_dir: folder relative paths in the workload are resolved from.
        sections: raw mappings for other components (control, reward, episode, faults, splits).
    """

    name: str
    description: str
    cluster: ClusterSpec
    slo: SLO
    workload: dict[str, Any]
    seed: int = 0
    base_dir: Path | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def build_workload(self, rng: np.random.Generator,
                       overrides: dict[str, Any] | None = None, *,
                       skip_before_s: float = 0.0) -> Workload:
        """Draw (or read) this scenario's workload.

        ``overrides`` with a ``trace`` or ``generator`` key replace the workload; otherwise they
        replace its top-level keys (``duration_s``, ``rate_scale``, ...). A generated workload
        leaves out the requests arriving before ``skip_before_s`` (seconds), the others
        unchanged (:func:`~rlscale.sim.workload.config.workload_from_config`).
        """
        overrides = overrides or {}
        replaces_source = "trace" in overrides or "generator" in overrides
        cfg = dict(overrides) if replaces_source else {**self.workload, **overrides}
        return workload_from_config(cfg, rng, base_dir=self.base_dir,
                                    skip_before_s=skip_before_s)

    def pool_index(self, name: str) -> int:
        """Index of the pool called ``name``."""
        for index, pool in enumerate(self.cluster.pools):
            if pool.name == name:
                return index
        raise KeyError(f"scenario {self.name!r} has no pool {name!r}; pools: "
                       f"{[p.name for p in self.cluster.pools]}")


def builtin_scenario_names() -> list[str]:
    """Names of the scenarios shipped with rlscale."""
    folder = resources.files("rlscale").joinpath("scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name or a scenario YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file {str(path)!r} does not exist")
        text, origin, base_dir = path.read_text(), str(path), path.resolve().parent
    else:
        name = str(name_or_path)
        if name not in builtin_scenario_names():
            raise ConfigError(f"unknown scenario {name!r}; built-in scenarios: "
                              f"{', '.join(builtin_scenario_names())} (or give a YAML path)")
        text = resources.files("rlscale").joinpath("scenarios").joinpath(f"{name}.yaml").read_text()
        origin, base_dir = name, None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"scenario {origin!r}: not valid YAML: {err}") from None
    return scenario_from_dict(raw, origin, base_dir)


def scenario_from_dict(raw: Any, origin: str = "<dict>",
                       base_dir: Path | None = None) -> Scenario:
    """Validate a parsed scenario mapping; errors name the offending field."""
    top = Section(raw, "scenario")
    name = top.string("name", Path(origin).stem)
    description = top.string("description", "")
    seed = top.integer("seed", 0, min_value=0)
    slo_section = top.section("slo")
    slo = SLO(ttft_s=slo_section.number("ttft_s", 2.0, min_value=0, strict_min=True),
              itl_s=slo_section.number("itl_s", 0.1, min_value=0, strict_min=True))
    slo_section.finish()
    gpus = top.section("gpus")
    inventory = {gpu: gpus.integer(gpu, min_value=0, max_value=MAX_REPLICAS * 8)
                 for gpu in list(gpus.data)}
    gpus.finish()
    gateway = top.section("gateway")
    pools = tuple(_pool(section) for section in top.sections("pools"))
    if not pools:
        raise ConfigError("scenario.pools: at least one pool is needed")
    try:
        cluster = ClusterSpec(
            pools=pools,
            gpu_inventory=inventory,
            gateway_timeout_s=gateway.number("timeout_s", 60.0, min_value=0, strict_min=True),
            routing=gateway.string("routing", "least_outstanding",
                                   ("least_outstanding", "round_robin")),
            max_retries=gateway.integer("max_retries", 1, min_value=0),
            drain_timeout_s=top.number("drain_timeout_s", 600.0, min_value=0, strict_min=True),
            start_cold=top.boolean("start_cold", False),
        )
    except ValueError as err:
        raise ConfigError(f"scenario: {err}") from None
    gateway.finish()
    workload = top.raw("workload")
    if not isinstance(workload, dict):
        raise ConfigError("scenario.workload: expected a mapping (trace or generator)")
    sections = {key: top.raw(key) for key in OWNED_ELSEWHERE if top.has(key)}
    top.finish()
    return Scenario(name, description, cluster, slo, workload, seed, base_dir, sections, origin)


def _pool(section: Section) -> PoolSpec:
    name = section.string("name")
    try:
        profile = load_profile(section.string("profile"))
    except ProfileError as err:
        raise ConfigError(f"{section.path}.profile: {err}") from None
    engine = section.section("engine")
    overrides: dict[str, Any] = {}
    for key, kind in ENGINE_SETTINGS.items():
        if not engine.has(key):
            engine.raw(key)
            continue
        if kind is bool:
            overrides[key] = engine.boolean(key)
        elif kind is int:
            overrides[key] = engine.integer(key, min_value=1)
        else:
            overrides[key] = engine.number(key, min_value=0, max_value=1, strict_min=True)
    engine.finish()
    try:
        profile = profile.with_overrides(**overrides)
    except (ProfileError, ValueError) as err:
        raise ConfigError(f"{engine.path}: {err}") from None
    cold_start = None
    if section.has("cold_start"):
        cold = section.section("cold_start")
        try:
            cold_start = ColdStart(
                median_s=cold.number("median_s", min_value=0),
                p95_s=cold.number("p95_s", min_value=0),
                min_s=cold.number("min_s", 0.0, min_value=0),
            )
        except ProfileError as err:
            raise ConfigError(f"{cold.path}: {err}") from None
        cold.finish()
    price = (section.number("price_per_gpu_hour", min_value=0)
             if section.has("price_per_gpu_hour") else None)
    max_replicas = section.integer("max_replicas", min_value=0, max_value=MAX_REPLICAS)
    min_replicas = section.integer("min_replicas", 0, min_value=0, max_value=max_replicas)
    pool = PoolSpec(
        name=name,
        profile=profile,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        initial_replicas=section.integer("initial_replicas", min_replicas,
                                         min_value=min_replicas, max_value=max_replicas),
        routing_weight=section.number("routing_weight", 1.0, min_value=0),
        price_per_gpu_hour=price,
        cold_start=cold_start,
    )
    section.finish()
    return pool
