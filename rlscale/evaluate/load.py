"""How heavy a workload is for a cluster, and scaling a workload configuration to a target load.

Load is measured two ways (``--target-load``):

* ``12000tok/s`` — prompt plus output tokens per second (mean over the workload);
* ``0.45`` — a fraction of the cluster's capacity, the same measure training's workload
  mixtures draw loads in (:func:`rlscale.sim.workload.mixture.cluster_capacity_rps`): the mean
  request rate over what every pool serves at its limit (``max_replicas`` and its GPU type's
  inventory), each replica at the profile's SLO-bound capacity for the workload's own mean
  prompt and output lengths.

The fraction is the unit that transfers across length mixes: a long-prompt workload at 0.45
keeps the cluster as busy as a chat workload at 0.45, while equal tokens/s would not.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

from rlscale.configschema import ConfigError
from rlscale.sim.spec import SLO, ClusterSpec
from rlscale.sim.workload import Workload
from rlscale.sim.workload.mixture import cluster_capacity_rps

_TOKENS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*tok/s\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Load:
    """A workload's mean load on a cluster.

    Attributes:
        rate_rps: requests per second; tokens_per_s: prompt + output tokens per second.
        prompt_mean / output_mean: tokens per request.
        capacity_rps: the cluster's capacity for this length mix (req/s); fraction: rate over it.
    """

    rate_rps: float
    tokens_per_s: float
    prompt_mean: float
    output_mean: float
    capacity_rps: float

    @property
    def fraction(self) -> float:
        """Mean request rate as a fraction of the cluster's capacity."""
        return self.rate_rps / self.capacity_rps if self.capacity_rps > 0 else math.inf

    def text(self) -> str:
        """One line for the printed output."""
        return (f"{self.rate_rps:.1f} req/s, {self.tokens_per_s:,.0f} tok/s (prompt "
                f"{self.prompt_mean:.0f}, output {self.output_mean:.0f} tokens), "
                f"{self.fraction:.0%} of the cluster's capacity ({self.capacity_rps:.1f} req/s)")


def measure(workload: Workload, cluster: ClusterSpec, slo: SLO) -> Load:
    """The workload's mean load on ``cluster``."""
    span = workload.duration_s
    if len(workload) == 0 or span <= 0:
        raise ConfigError(f"workload {workload.source!r}: no requests to measure a load from")
    prompt = float(workload.prompt_tokens.mean())
    output = float(workload.output_tokens.mean())
    rate = len(workload) / span
    return Load(rate, rate * (prompt + output), prompt, output,
                cluster_capacity_rps(cluster, workload, slo.itl_s))


def parse_target(text: str) -> tuple[str, float]:
    """``"12000tok/s"`` -> ``("tokens_per_s", 12000)``; ``"0.45"`` -> ``("fraction", 0.45)``."""
    match = _TOKENS.match(text)
    if match:
        value, kind = float(match.group(1)), "tokens_per_s"
    else:
        try:
            value, kind = float(text), "fraction"
        except ValueError:
            value, kind = math.nan, "fraction"
    if not (math.isfinite(value) and value > 0) or (kind == "fraction" and value > 10):
        raise ConfigError(f"--target-load: expected tokens per second ('12000tok/s') or a "
                          f"fraction of the cluster's capacity in (0, 10] ('0.45'), got {text!r}")
    return kind, value


def factor_for(load: Load, kind: str, value: float) -> float:
    """The rate factor that brings ``load`` to ``value`` (of ``kind``, see :func:`parse_target`)."""
    current = load.tokens_per_s if kind == "tokens_per_s" else load.fraction
    if not current > 0 or not math.isfinite(current):
        raise ConfigError(f"cannot scale a workload with load {current} to {value}")
    return value / current


def scaled_config(workload: dict[str, Any], factor: float) -> dict[str, Any]:
    """A workload mapping with its request rate multiplied by ``factor``: a trace's
    ``rate_scale``, or every generator's ``rate_per_s`` / ``mean_rate_per_s``."""
    scaled = copy.deepcopy(workload)
    if "trace" in scaled:
        scaled["rate_scale"] = float(scaled.get("rate_scale", 1.0)) * factor
        return scaled
    generators = scaled.get("generator")
    for gen in generators if isinstance(generators, list) else [generators]:
        if not isinstance(gen, dict):
            raise ConfigError(f"workload.generator: expected a mapping, got {gen!r}")
        for key in ("rate_per_s", "mean_rate_per_s"):
            if key in gen:
                gen[key] = float(gen[key]) * factor
    return scaled
