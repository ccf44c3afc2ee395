"""A distribution of workloads: each training episode draws a family and its parameters.

A mixture is written in YAML (the ``workloads:`` section of a training config)::

    load: {uniform: [0.25, 0.8]}     # offered load as a fraction of the cluster's capacity
    families:
      - name: diurnal-conversation
        weight: 2                    # relative probability (default 1)
        workload:                    # a workload config (rlscale.sim.workload.config) whose
          generator:                 # values may be draws:
            kind: diurnal
            mean_rate_per_s: 10      #   (the load draw rescales the rate anyway)
            amplitude: {uniform: [0.2, 0.8]}
            period_s: {loguniform: [900, 7200]}
            phase_s: {uniform: [0, 7200]}
          lengths: {choice: [azure-conv-2023, azure-code-2023]}

A draw is a one-key mapping: ``{uniform: [low, high]}``, ``{loguniform: [low, high]}``
(both floats), ``{integers: [low, high]}`` (inclusive) or ``{choice: [a, b, ...]}`` (any
values, themselves possibly draws). Everything else is taken as written. Generated families
get ``duration_s`` set to the episode's horizon; trace families replay a random window of the
trace (optionally limited to ``offset_range_s: [low, high]`` of its clock, so that held-out
parts stay unseen) after their own ``time_scale``.

**GPU shortages** (optional): ``gpu_shortage: {probability: 0.3, fraction: {uniform: [0.25,
0.75]}}`` gives an episode, with that probability, a cluster in which one GPU type (drawn
uniformly) keeps only ``fraction`` of its inventory (rounded, and never fewer GPUs than its pools'
initial and minimum replicas need), so that the policy meets pools it cannot grow.

**Load** is the workload's mean request rate over the episode divided by the cluster's
capacity at that workload's own mean lengths: ``sum over pools of capacity_rps x the most
replicas the pool can run`` (its ``max_replicas``, and no more than its GPU type's inventory
allows), with ``capacity_rps`` from the pool's profile at the SLO
(:func:`rlscale.sim.capacity.replica_capacity_rps`). So a long-prompt family at load 0.5 asks
for half of what the cluster serves of long prompts, not half of its short-prompt rate. The
cluster is the episode's: after a GPU shortage, the load is a fraction of what is left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.sim.capacity import replica_capacity_rps
from rlscale.sim.spec import ClusterSpec
from rlscale.sim.workload.config import WorkloadConfigError, workload_from_config
from rlscale.sim.workload.transforms import rate_scaled, window
from rlscale.sim.workload.workload import Workload

MAX_RATE_FACTOR = 1000.0
"""Largest rate multiplier a load draw may apply to a family's requests."""

DRAWS = ("uniform", "loguniform", "integers", "choice")
"""The one-key mappings that stand for a random value (see the module docstring)."""


@dataclass(frozen=True)
class Family:
    """One kind of workload: a config template (values may be draws) and its weight."""

    name: str
    workload: Mapping[str, Any]
    weight: float = 1.0
    offset_range_s: tuple[float, float] | None = None


@dataclass(frozen=True)
class GpuShortage:
    """With ``probability`` per episode, one GPU type keeps ``fraction`` (a value or a draw)
    of its inventory."""

    probability: float
    fraction: Any

    def apply(self, cluster: ClusterSpec, rng: np.random.Generator) -> ClusterSpec:
        """``cluster``, or a copy with one GPU type's inventory cut (see the module docstring)."""
        if not rng.random() < self.probability:
            return cluster
        types = sorted(cluster.gpu_inventory)
        short = types[int(rng.integers(len(types)))]
        fraction = float(resolve(self.fraction, rng, "workloads.gpu_shortage.fraction"))
        needed = sum(max(p.initial_replicas, p.min_replicas) * p.gpus_per_replica
                     for p in cluster.pools if p.gpu_type == short)
        inventory = dict(cluster.gpu_inventory)
        inventory[short] = max(needed, round(fraction * inventory[short]))
        return replace(cluster, gpu_inventory=inventory)


@dataclass(frozen=True)
class EpisodeWorkload:
    """What one draw gave: the family, its resolved config, the load, the requests and the
    cluster they are sent to (the given one, or a copy with a GPU shortage)."""

    family: str
    config: dict[str, Any]
    load: float
    workload: Workload
    cluster: ClusterSpec


@dataclass(frozen=True)
class WorkloadMixture:
    """Families with weights and a load distribution (fraction of cluster capacity)."""

    families: tuple[Family, ...]
    load: Any = 0.5
    gpu_shortage: GpuShortage | None = None

    def draw(self, rng: np.random.Generator, horizon_s: float, cluster: ClusterSpec,
             itl_slo_s: float, *, base_dir: Path | None = None) -> EpisodeWorkload:
        """One episode's requests on a clock starting at 0, ``horizon_s`` long, and its
        cluster."""
        if self.gpu_shortage is not None:
            cluster = self.gpu_shortage.apply(cluster, rng)
        weights = np.array([f.weight for f in self.families], dtype=np.float64)
        family = self.families[int(rng.choice(len(self.families), p=weights / weights.sum()))]
        config = resolve(family.workload, rng, f"workloads.{family.name}.workload")
        load = float(resolve(self.load, rng, "workloads.load"))
        if "generator" in config:
            config["duration_s"] = horizon_s
            requests = workload_from_config(config, rng, base_dir=base_dir,
                                            path=f"workloads.{family.name}.workload")
        else:
            whole = workload_from_config(config, rng, base_dir=base_dir,
                                         path=f"workloads.{family.name}.workload")
            low, high = family.offset_range_s or (0.0, whole.duration_s)
            high = min(high, whole.duration_s - horizon_s)
            if high < low:
                raise WorkloadConfigError(
                    f"workloads.{family.name}: the trace ({whole.duration_s:.0f} s after its "
                    f"time_scale) holds no {horizon_s:.0f} s episode inside offset_range_s "
                    f"{[low, high]}")
            requests = window(whole, float(rng.uniform(low, high)), horizon_s)
        if len(requests) == 0:
            return EpisodeWorkload(family.name, config, load, requests, cluster)
        capacity = cluster_capacity_rps(cluster, requests, itl_slo_s)
        factor = load * capacity / (len(requests) / horizon_s)
        if not factor <= MAX_RATE_FACTOR:
            raise WorkloadConfigError(
                f"workloads.{family.name}: {len(requests)} requests in {horizon_s:.0f} s would "
                f"need x{factor:.3g} to reach load {load:.2f} (more than x{MAX_RATE_FACTOR:g});"
                f" raise the family's rate")
        return EpisodeWorkload(family.name, config, load, rate_scaled(requests, factor, rng),
                               cluster)


def cluster_capacity_rps(cluster: ClusterSpec, workload: Workload, itl_slo_s: float) -> float:
    """Requests/s the whole cluster serves within the SLO at ``workload``'s mean lengths."""
    prompt = float(workload.prompt_tokens.mean())
    output = float(workload.output_tokens.mean())
    total = 0.0
    for pool in cluster.pools:
        room = cluster.gpu_inventory.get(pool.gpu_type, 0) // pool.gpus_per_replica
        total += replica_capacity_rps(pool.profile, prompt, output, itl_slo_s) * min(
            pool.max_replicas, room)
    return total


def resolve(value: Any, rng: np.random.Generator, path: str) -> Any:
    """``value`` with every draw replaced by a random value (see the module docstring)."""
    if isinstance(value, Mapping):
        if len(value) == 1 and next(iter(value)) in DRAWS:
            kind, args = next(iter(value.items()))
            return _draw(str(kind), args, rng, f"{path}.{kind}")
        return {k: resolve(v, rng, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, rng, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _draw(kind: str, args: Any, rng: np.random.Generator, path: str) -> Any:
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise WorkloadConfigError(f"{path}: expected a non-empty list, got {args!r}")
        return resolve(args[int(rng.integers(len(args)))], rng, path)
    if (not isinstance(args, list) or len(args) != 2
            or not all(_finite_number(a) for a in args) or args[0] > args[1]):
        raise WorkloadConfigError(f"{path}: expected [low, high] with low <= high, got {args!r}")
    low, high = float(args[0]), float(args[1])
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "integers":
        return int(rng.integers(math.ceil(low), math.floor(high) + 1))
    if low <= 0:
        raise WorkloadConfigError(f"{path}: loguniform needs low > 0, got {args!r}")
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def parse_mixture(data: Any, *, held_out: Sequence[str] = (),
                  path: str = "workloads") -> WorkloadMixture:
    """Validate a ``workloads:`` mapping; ``held_out`` names families that must not appear
    (the evaluation's held-out suite). Raises ``WorkloadConfigError`` naming the field."""
    if not isinstance(data, Mapping):
        raise WorkloadConfigError(f"{path}: expected a mapping with 'families', got {data!r}")
    unknown = sorted(set(map(str, data)) - {"families", "load", "gpu_shortage"})
    if unknown:
        raise WorkloadConfigError(f"{path}: unknown key(s) {unknown}; valid: families, load, "
                                  f"gpu_shortage")
    raw = data.get("families")
    if not isinstance(raw, list) or not raw:
        raise WorkloadConfigError(f"{path}.families: expected a non-empty list, got {raw!r}")
    families = []
    for i, entry in enumerate(raw):
        where = f"{path}.families[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("workload"), Mapping):
            raise WorkloadConfigError(f"{where}: expected {{name: ..., workload: {{...}}}}, "
                                      f"got {entry!r}")
        extra = sorted(set(map(str, entry)) - {"name", "workload", "weight", "offset_range_s"})
        if extra:
            raise WorkloadConfigError(f"{where}: unknown key(s) {extra}; valid: name, "
                                      f"workload, weight, offset_range_s")
        name = entry["name"]
        if name in held_out:
            raise WorkloadConfigError(f"{where}: family {name!r} is held out of training "
                                      f"(the generalization suite judges on it)")
        weight = entry.get("weight", 1.0)
        if not _finite_number(weight) or weight <= 0:
            raise WorkloadConfigError(f"{where}.weight: expected a number > 0, got {weight!r}")
        offsets = entry.get("offset_range_s")
        if offsets is not None and (not isinstance(offsets, list) or len(offsets) != 2 or not
                                    all(_finite_number(o) and o >= 0 for o in offsets)
                                    or offsets[0] > offsets[1]):
            raise WorkloadConfigError(f"{where}.offset_range_s: expected [low, high] seconds, "
                                      f"0 <= low <= high, got {offsets!r}")
        families.append(Family(name, dict(entry["workload"]), float(weight),
                               None if offsets is None else (float(offsets[0]),
                                                             float(offsets[1]))))
    names = [f.name for f in families]
    if len(set(names)) != len(names):
        raise WorkloadConfigError(f"{path}.families: names must be unique, got {names}")
    load = data.get("load", 0.5)
    _check_drawn(load, f"{path}.load", 2.0, "a fraction of capacity")
    return WorkloadMixture(tuple(families), load,
                           _gpu_shortage(data.get("gpu_shortage"), f"{path}.gpu_shortage"))


def _gpu_shortage(data: Any, path: str) -> GpuShortage | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or set(map(str, data)) != {"probability", "fraction"}:
        raise WorkloadConfigError(f"{path}: expected {{probability: p, fraction: f}}, got "
                                  f"{data!r}")
    probability = data["probability"]
    if not _finite_number(probability) or not 0 <= probability <= 1:
        raise WorkloadConfigError(f"{path}.probability: expected a number in [0, 1], got "
                                  f"{probability!r}")
    _check_drawn(data["fraction"], f"{path}.fraction", 1.0, "a fraction")
    return GpuShortage(float(probability), data["fraction"])


def _check_drawn(value: Any, path: str, high: float, what: str) -> None:
    """``value`` (a number or a draw of one) must give numbers in (0, ``high``]: eight probe
    draws, so that a draw that can give an absurd value fails here, not mid-training."""
    probe = np.random.default_rng(0)
    for _ in range(8):
        drawn = resolve(value, probe, path)
        if not _finite_number(drawn) or not 0 < drawn <= high:
            raise WorkloadConfigError(f"{path}: expected {what} in (0, {high:g}] (or a draw "
                                      f"of one), got {drawn!r}")
