"""The environment's settings: control, reward, episodes and faults, read from a scenario.

Each section is optional in the scenario YAML; every field has a documented default and is
validated with an error that names it (``scenario.reward.cost: expected a number >= 0, got -1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlscale.configschema import ConfigError, Section
from rlscale.sim.scenario import Scenario


@dataclass(frozen=True)
class ControlConfig:
    """How the agent acts.

    Attributes:
        interval_s: simulated seconds between two decisions (HPA syncs every 15 s; 30 s default).
        replica_step: the largest replica change per pool per decision (actions -k..+k).
        weight_levels: routing-weight levels per pool (0..L-1; 0 sends the pool no traffic).
        warmup_steps: intervals run with the initial replicas before the first observation.
        day_length_s: period of the time-of-day features (86,400 s; the built-in scenarios
            compress a day into their diurnal period).
        history_s: the observation's long window (seconds of snapshots kept).
    """

    interval_s: float = 30.0
    replica_step: int = 2
    weight_levels: int = 5
    warmup_steps: int = 1
    day_length_s: float = 86_400.0
    history_s: float = 300.0


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
class EnvConfig:
    """All environment settings."""

    control: ControlConfig = field(default_factory=ControlConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def max_episode_steps(self) -> int:
        """Decisions per episode."""
        return max(1, round(self.episode.duration_s / self.control.interval_s))


def env_config(scenario: Scenario, overrides: dict[str, Any] | None = None) -> EnvConfig:
    """Read the scenario's ``control``, ``reward``, ``episode`` and ``faults`` sections.

    ``overrides`` maps section name to a mapping of fields that replace the scenario's.
    """
    merged = {key: {**(scenario.sections.get(key) or {}), **((overrides or {}).get(key) or {})}
              for key in ("control", "reward", "episode", "faults")}
    unknown = sorted(set(overrides or {}) - set(merged))
    if unknown:
        raise ConfigError(f"env overrides: unknown section(s) {unknown}; "
                          f"valid: {sorted(merged)}")
    c = Section(merged["control"], "scenario.control")
    control = ControlConfig(
        interval_s=c.number("interval_s", 30.0, min_value=1.0),
        replica_step=c.integer("replica_step", 2, min_value=1, max_value=16),
        weight_levels=c.integer("weight_levels", 5, min_value=2, max_value=101),
        warmup_steps=c.integer("warmup_steps", 1, min_value=0, max_value=100),
        day_length_s=c.number("day_length_s", 86_400.0, min_value=0, strict_min=True),
        history_s=c.number("history_s", 300.0, min_value=0, strict_min=True),
    )
    c.finish()
    r = Section(merged["reward"], "scenario.reward")
    reward = RewardConfig(slo=r.number("slo", 1.0, min_value=0), cost=r.number(
        "cost", 0.5, min_value=0), churn=r.number("churn", 0.01, min_value=0))
    r.finish()
    e = Section(merged["episode"], "scenario.episode")
    duration = e.number("duration_s", 1800.0, min_value=control.interval_s)
    scale = e.raw("load_scale", [0.8, 1.2])
    if (not isinstance(scale, (list, tuple)) or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            or not 0 < scale[0] <= scale[1]):
        raise ConfigError(f"scenario.episode.load_scale: expected [low, high] with "
                          f"0 < low <= high, got {scale!r}")
    episode = EpisodeConfig(duration, (float(scale[0]), float(scale[1])),
                            e.boolean("random_offset", True))
    e.finish()
    f = Section(merged["faults"], "scenario.faults")
    faults = FaultConfig(
        pod_crash_per_hour=f.number("pod_crash_per_hour", 0.0, min_value=0),
        node_loss_per_hour=f.number("node_loss_per_hour", 0.0, min_value=0),
        node_gpus=f.integer("node_gpus", 4, min_value=1),
        node_loss_duration_s=f.number("node_loss_duration_s", 600.0, min_value=0,
                                      strict_min=True),
        slow_cold_start_prob=f.number("slow_cold_start_prob", 0.0, min_value=0, max_value=1),
        slow_cold_start_factor=f.number("slow_cold_start_factor", 3.0, min_value=1),
        metric_dropout_prob=f.number("metric_dropout_prob", 0.0, min_value=0, max_value=1),
    )
    f.finish()
    return EnvConfig(control, reward, episode, faults)
