"""Tune each baseline's main knob on the training windows, fairly, before held-out evaluation.

For every policy with a tunable knob, each value of its grid runs on ``windows`` training
windows (never validation or test ones); the cheapest value whose mean SLO attainment reaches
``slo_target`` wins, or the most attaining one if none does. The scenario's ``tuning`` section
sets ``slo_target`` (default 0.95), ``windows`` (3) and ``seeds`` ([0]).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlscale.configschema import ConfigError, Section
from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.policies import PolicySpec, tunable
from rlscale.evaluate.report import aggregate
from rlscale.evaluate.runner import run_tasks, tasks_for
from rlscale.sim.scenario import Scenario


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    """``slo_target``: attainment a setting must reach (fraction); ``windows``: training
    windows per setting; ``seeds``: seeds per window."""

    slo_target: float = 0.95
    windows: int = 3
    seeds: tuple[int, ...] = (0,)


def tuning_config(scenario: Scenario) -> TuningConfig:
    """Read the scenario's ``tuning`` section."""
    section = Section(scenario.sections.get("tuning"), "scenario.tuning")
    seeds = section.raw("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise ConfigError(f"scenario.tuning.seeds: expected a list of integers, got {seeds!r}")
    config = TuningConfig(section.number("slo_target", 0.95, min_value=0, max_value=1),
                          section.integer("windows", 3, min_value=1, max_value=50), tuple(seeds))
    section.finish()
    return config


def tune(scenario: Scenario, scenario_ref: str, specs: list[PolicySpec], *,
         slo_target: float | None = None, seeds: Sequence[int] | None = None,
         workers: int | None = None,
         progress: bool = True) -> tuple[list[PolicySpec], dict[str, Any]]:
    """Tuned versions of ``specs`` and a record of every setting tried (``seeds`` replaces the
    scenario's ``tuning.seeds``)."""
    config = tuning_config(scenario)
    if seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(seeds))
    target = config.slo_target if slo_target is None else slo_target
    episode_s = env_config(scenario).episode.duration_s
    windows = scenario_splits(scenario, episode_s).train_windows(
        config.windows, env_config(scenario).control.day_length_s)
    candidates: list[PolicySpec] = []
    for spec in specs:
        knob = tunable(spec)
        if knob is None or knob[0] in spec.knobs:
            continue
        name, grid = knob
        candidates.extend(PolicySpec(spec.name, {**spec.knobs, name: value}) for value in grid)
    rows = run_tasks(tasks_for(scenario_ref, candidates, windows, config.seeds, "train"),
                     workers=workers, progress=progress, description="tuning on training windows")
    summary = {row["policy"]: row for row in aggregate(rows)}
    tuned: list[PolicySpec] = []
    record: dict[str, Any] = {"slo_target": target, "windows": [w.__dict__ for w in windows],
                              "seeds": list(config.seeds), "policies": {}}
    for spec in specs:
        mine = [c for c in candidates if c.name == spec.name]
        if not mine:
            tuned.append(spec)
            continue
        tried = [(c, summary[c.label]) for c in mine]
        meeting = [(c, s) for c, s in tried if s["slo_attainment"] >= target]
        if meeting:
            best = min(meeting, key=lambda cs: cs[1]["cost_usd"])[0]
        else:
            best = max(tried, key=lambda cs: (cs[1]["slo_attainment"], -cs[1]["cost_usd"]))[0]
        tuned.append(best)
        record["policies"][spec.name] = {
            "chosen": best.knobs, "met_target": bool(meeting),
            "tried": [{"knobs": c.knobs, "slo_attainment": s["slo_attainment"],
                       "cost_usd": s["cost_usd"]} for c, s in tried]}
    return tuned, record


def save_tuned(path: Path, record: dict[str, Any]) -> None:
    """Write the tuning record (``tuned.json``)."""
    path.write_text(json.dumps(record, indent=1) + "\n")


def load_tuned(path: Path, specs: list[PolicySpec]) -> list[PolicySpec]:
    """Apply the knobs chosen in a ``tuned.json`` to ``specs`` (explicit knobs win)."""
    record = json.loads(path.read_text())
    chosen = {name: entry["chosen"] for name, entry in record.get("policies", {}).items()}
    return [PolicySpec(s.name, {**chosen.get(s.name, {}), **s.knobs}) for s in specs]
