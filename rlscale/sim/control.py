"""How decisions are paced: a scenario's ``control`` section.

The environment acts on it and the twin writes it (scaled to wall time) into the controller
config it generates, so both read it here. Every default lives in :class:`ControlConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlscale.configschema import Section
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



def read_control(section: Mapping[str, Any] | None) -> ControlConfig:
    """Validate a ``control`` section (errors name ``scenario.control.<field>``); absent
    fields take :class:`ControlConfig`'s defaults."""
    c = Section(dict(section or {}), "scenario.control")
    d = ControlConfig()
    control = ControlConfig(
        interval_s=c.number("interval_s", d.interval_s, min_value=1.0),
        replica_step=c.integer("replica_step", d.replica_step, min_value=1, max_value=16),
        weight_levels=c.integer("weight_levels", d.weight_levels, min_value=2, max_value=101),
        warmup_steps=c.integer("warmup_steps", d.warmup_steps, min_value=0, max_value=100),
        day_length_s=c.number("day_length_s", d.day_length_s, min_value=0, strict_min=True),
        history_s=c.number("history_s", d.history_s, min_value=0, strict_min=True),
    )
    c.finish()
    return control


def control_config(scenario: Scenario) -> ControlConfig:
    """The scenario's ``control`` section, validated."""
    return read_control(scenario.sections.get("control"))
