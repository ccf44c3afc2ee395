"""The environment's settings: control, reward, episodes and faults, read from a scenario.

Each section is optional in the scenario YAML; every field has a documented default and is
validated with an error that names it (``scenario.reward.cost: expected a number >= 0, got -1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlscale.configschema import ConfigError, Section
from rlscale.sim.backend import MODES
from rlscale.sim.control import ControlConfig, read_control
from rlscale.sim.scenario import Scenario

__all__ = ["ControlConfig", "EnvConfig", "EpisodeConfig", "FaultConfig", "RewardConfig",
           "env_config"]


@dataclass(frozen=True)
class RewardConfig:
    """Coefficients of ``reward = slo * attainment - cost * cost_share - churn * changes``.

    ``attainment`` is the share of requests ending in the step that met both SLOs (failed ones
    count as misses; 1 when none ended); ``cost_share`` is the step's GPU cost over the cost of
    every pool at ``max_replicas`` for the step; ``changes`` is the number of pools whose
    replica count changed, over the number of pools.
    """

    slo: float = 1.0
    cost: float = 0.5
    churn: float = 0.01


@dataclass(frozen=True)
class EpisodeConfig:
    """Domain randomization: each episode samples a window, a load scale and a time offset.

    Attributes:
        duration_s: simulated seconds per episode.
        load_scale: (low, high) of the uniform request-rate multiplier.
        random_offset: start at a uniformly random time of the workload's day (else at 0).
    """

    duration_s: float = 1800.0
    load_scale: tuple[float, float] = (0.8, 1.2)
    random_offset: bool = True


@dataclass(frozen=True)
class FaultConfig:
    """Optional faults, all off by default.

    Attributes:
        pod_crash_per_hour: rate of crashes of a random ready pod (it is recreated).
        node_loss_per_hour: rate of losing a node: ``node_gpus`` GPUs of a random pool's type
            vanish (pods on them crash) for ``node_loss_duration_s``.
        slow_cold_start_prob: per episode, probability that one random pool's cold starts take
            ``slow_cold_start_factor`` times longer.
        metric_dropout_prob: per step, probability that one random pod's metrics are missing
            from the snapshot (a failed scrape).
    """

    pod_crash_per_hour: float = 0.0
    node_loss_per_hour: float = 0.0
    node_gpus: int = 4
    node_loss_duration_s: float = 600.0
    slow_cold_start_prob: float = 0.0
    slow_cold_start_factor: float = 3.0
    metric_dropout_prob: float = 0.0


@dataclass(frozen=True)
class EngineConfig:
    """Which simulator runs the cluster.

    Attributes:
        mode: ``request`` (default): every request through vLLM's scheduler, the reference for
            evaluation and every reported figure; ``fast``: the same pods, GPUs, gateway and
            routing with each pool's engines as a fluid (:mod:`rlscale.sim.fluid`), for bulk
            training rollouts. Faults that crash pods or lose nodes need ``request``.
    """

    mode: str = "request"


@dataclass(frozen=True)
class EnvConfig:
    """All environment settings."""

    control: ControlConfig = field(default_factory=ControlConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def max_episode_steps(self) -> int:
        """Decisions per episode."""
        return max(1, round(self.episode.duration_s / self.control.interval_s))


def env_config(scenario: Scenario, overrides: dict[str, Any] | None = None) -> EnvConfig:
    """Read the scenario's ``control``, ``reward``, ``episode``, ``faults`` and ``engine``
    sections.

    ``overrides`` maps section name to a mapping of fields that replace the scenario's.
    """
    merged = {key: {**(scenario.sections.get(key) or {}), **((overrides or {}).get(key) or {})}
              for key in ("control", "reward", "episode", "faults", "engine")}
    unknown = sorted(set(overrides or {}) - set(merged))
    if unknown:
        raise ConfigError(f"env overrides: unknown section(s) {unknown}; "
                          f"valid: {sorted(merged)}")
    control = read_control(merged["control"])
    r = Section(merged["reward"], "scenario.reward")
    rd = RewardConfig()
    reward = RewardConfig(slo=r.number("slo", rd.slo, min_value=0), cost=r.number(
        "cost", rd.cost, min_value=0), churn=r.number("churn", rd.churn, min_value=0))
    r.finish()
    e = Section(merged["episode"], "scenario.episode")
    ed = EpisodeConfig()
    duration = e.number("duration_s", ed.duration_s, min_value=control.interval_s)
    scale = e.raw("load_scale", list(ed.load_scale))
    if (not isinstance(scale, (list, tuple)) or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            or not 0 < scale[0] <= scale[1]):
        raise ConfigError(f"scenario.episode.load_scale: expected [low, high] with "
                          f"0 < low <= high, got {scale!r}")
    episode = EpisodeConfig(duration, (float(scale[0]), float(scale[1])),
                            e.boolean("random_offset", ed.random_offset))
    e.finish()
    f = Section(merged["faults"], "scenario.faults")
    fd = FaultConfig()
    faults = FaultConfig(
        pod_crash_per_hour=f.number("pod_crash_per_hour", fd.pod_crash_per_hour, min_value=0),
        node_loss_per_hour=f.number("node_loss_per_hour", fd.node_loss_per_hour, min_value=0),
        node_gpus=f.integer("node_gpus", fd.node_gpus, min_value=1),
        node_loss_duration_s=f.number("node_loss_duration_s", fd.node_loss_duration_s,
                                      min_value=0, strict_min=True),
        slow_cold_start_prob=f.number("slow_cold_start_prob", fd.slow_cold_start_prob,
                                      min_value=0, max_value=1),
        slow_cold_start_factor=f.number("slow_cold_start_factor", fd.slow_cold_start_factor,
                                        min_value=1),
        metric_dropout_prob=f.number("metric_dropout_prob", fd.metric_dropout_prob,
                                     min_value=0, max_value=1),
    )
    f.finish()
    g = Section(merged["engine"], "scenario.engine")
    engine = EngineConfig(mode=g.string("mode", "request", MODES))
    g.finish()
    if engine.mode == "fast" and (faults.pod_crash_per_hour > 0 or faults.node_loss_per_hour > 0):
        raise ConfigError("scenario.engine.mode: 'fast' does not model pod crashes or node "
                          "losses; set faults.pod_crash_per_hour and faults.node_loss_per_hour "
                          "to 0 or use mode 'request'")
    return EnvConfig(control, reward, episode, faults, engine)
