"""The scenario an evaluation runs: the named one, or it with a trace, a load and laid-out windows.

``rlscale evaluate --trace FILE`` keeps the scenario's pools, SLO, control and episode settings
and replays ``FILE`` instead of its workload; ``--time-scale`` / ``--rate-scale`` transform the
replay and ``--target-load`` scales its rate to a load (:mod:`rlscale.evaluate.load`). A trace
scenario without a ``splits`` section (from ``--trace`` or a YAML) gets its windows laid out by
:func:`~rlscale.evaluate.windows.auto_layout`. Any change is written to ``scenario.yaml`` in the
output folder, which the runs then read (the resolved configuration is kept with the results).
Every trace window is checked to lie inside the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlscale.configschema import ConfigError
from rlscale.envs.config import env_config
from rlscale.envs.splits import scenario_splits
from rlscale.evaluate.load import factor_for, measure, parse_target, scaled_config
from rlscale.evaluate.windows import auto_layout, check_trace_windows
from rlscale.sim.scenario import Scenario, builtin_scenario_names, load_scenario, scenario_from_dict


@dataclass(frozen=True)
class LoadOptions:
    """How to replay a workload: ``trace`` replaces the scenario's workload; ``time_scale``
    (traces) replays faster; ``rate_scale`` multiplies the request rate; ``target_load``
    (``"12000tok/s"`` or a fraction of capacity like ``"0.45"``) sets the rate from the load."""

    trace: Path | None = None
    time_scale: float | None = None
    rate_scale: float | None = None
    target_load: str | None = None

    @property
    def any(self) -> bool:
        """Whether anything is asked for."""
        return any(v is not None for v in (self.trace, self.time_scale, self.rate_scale,
                                           self.target_load))


@dataclass
class Prepared:
    """The scenario to run (``ref``: name or path the workers load) and notes for the output."""

    ref: str
    scenario: Scenario
    notes: list[str] = field(default_factory=list)


def raw_scenario(ref: str | Path) -> tuple[dict[str, Any], Path | None]:
    """The parsed YAML of a scenario (built-in name or path) and the folder it was read from."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file {str(path)!r} does not exist")
        text, base = path.read_text(), path.resolve().parent
    elif str(ref) in builtin_scenario_names():
        text = resources.files("rlscale").joinpath("scenarios").joinpath(f"{ref}.yaml").read_text()
        base = None
    else:
        load_scenario(ref)  # raises the usual "unknown scenario" error
        raise ConfigError(f"unknown scenario {ref!r}")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(f"scenario {str(ref)!r}: expected a mapping")
    return raw, base


def _absolute(workload: dict[str, Any], base: Path | None) -> dict[str, Any]:
    out = dict(workload)
    for key in ("trace",):
        if isinstance(out.get(key), str) and base is not None and not Path(out[key]).is_absolute():
            out[key] = str(base / out[key])
    return out


def apply_load(raw: dict[str, Any], options: LoadOptions, notes: list[str]) -> dict[str, Any]:
    """``raw`` with the trace, scaling and target load of ``options`` applied."""
    raw = dict(raw)
    workload = dict(raw["workload"])
    if options.trace is not None:
        if not options.trace.is_file():
            raise ConfigError(f"--trace: file not found: {options.trace}")
        kept = {k: workload[k] for k in ("max_total_tokens",) if k in workload}
        workload = {"trace": str(options.trace.resolve()), **kept}
        raw.pop("splits", None)
        raw["name"] = f"{raw.get('name', 'scenario')}-{options.trace.stem}"
    if options.time_scale is not None:
        if "trace" not in workload:
            raise ConfigError("--time-scale: only a trace can be replayed faster; use "
                              "--rate-scale or --target-load for a generated workload")
        workload["time_scale"] = float(workload.get("time_scale", 1.0)) * options.time_scale
    if options.rate_scale is not None:
        workload = scaled_config(workload, options.rate_scale)
    raw["workload"] = workload
    if options.target_load is not None:
        kind, value = parse_target(options.target_load)
        scenario = scenario_from_dict(raw)
        before = measure(scenario.build_workload(np.random.default_rng(0)), scenario.cluster,
                         scenario.slo)
        factor = factor_for(before, kind, value)
        raw["workload"] = scaled_config(workload, factor)
        notes.append(f"load matched to {options.target_load}: request rate x{factor:.3f} "
                     f"(was {before.text()})")
    return raw


def prepare(ref: str | Path, out: Path, options: LoadOptions | None = None) -> Prepared:
    """Load (and if needed derive and write) the scenario to evaluate; check its windows."""
    options = options or LoadOptions()
    raw, base = raw_scenario(ref)
    notes: list[str] = []
    changed = options.any
    raw["workload"] = _absolute(raw.get("workload") or {}, base)
    if options.any:
        raw = apply_load(raw, options, notes)
    scenario = scenario_from_dict(raw, str(ref), base)
    trace = (scenario.build_workload(np.random.default_rng(0))
             if "trace" in scenario.workload else None)
    config = env_config(scenario)
    warmup = config.control.warmup_steps
    interval = config.control.interval_s
    if trace is not None and "splits" not in raw:
        layout = auto_layout(trace.duration_s, config.episode.duration_s, interval, warmup)
        raw["splits"] = layout.splits_section()
        raw["episode"] = {**(raw.get("episode") or {}), "duration_s": layout.episode_s}
        notes.append(layout.note)
        changed = True
    if changed:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "scenario.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        scenario = load_scenario(path)
        ref = path
        config = env_config(scenario)
    if trace is not None:
        notes.append("workload: " + measure(trace, scenario.cluster, scenario.slo).text())
        splits = scenario_splits(scenario, config.episode.duration_s)
        horizon = config.episode.duration_s + warmup * interval
        check_trace_windows((*splits.validation, *splits.test), horizon, trace.duration_s,
                            interval)
    return Prepared(str(ref), scenario, notes)
