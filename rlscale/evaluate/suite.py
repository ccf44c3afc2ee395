"""``rlscale evaluate --suite generalization``: held-out workload families at matched load.

The suite (``rlscale/evaluate/generalization.yaml``) names a base scenario (its pools, SLO,
control and episode settings: what the shipped policy was built for) and workload families
that training never sees. For each family the suite writes a scenario (``<out>/<family>/
scenario.yaml``) with the family's workload scaled to the base scenario's load, runs the
policies and every baseline's curve (:mod:`rlscale.evaluate.sweep`) on the family's windows,
and prints a table with each policy's cost at equal SLO against each curve. A summary table
gives the geometric means of those ratios across families. Every figure comes from the
request-level simulator.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlscale.configschema import ConfigError
from rlscale.envs.config import env_config
from rlscale.envs.splits import Window, scenario_splits
from rlscale.evaluate.curves import EqualSlo, geometric_mean
from rlscale.evaluate.load import factor_for, measure, parse_target, scaled_config
from rlscale.evaluate.plots import plot_pareto
from rlscale.evaluate.policies import PolicySpec
from rlscale.evaluate.prepare import prepare, raw_scenario
from rlscale.evaluate.report import aggregate, markdown_table, write_results
from rlscale.evaluate.runner import run_tasks, tasks_for
from rlscale.evaluate.sweep import Curves, judge, sweep
from rlscale.sim.scenario import scenario_from_dict

DEFAULT_TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"
"""Where trace files are looked up unless ``$RLSCALE_TRACES`` says otherwise: ``shared/data/
traces`` beside a checkout of this repository (the public traces this project ships with)."""

CURVE_BASELINES = ("static", "hpa", "kpa", "keda", "planner")
"""Baselines whose curves every family is judged against (plus the floor)."""


@dataclass(frozen=True)
class RunSettings:
    """How much to run per family: windows, seeds, episode length (s), per-pool sweeps,
    grid steps either side per pool (``radius``) and every ``thin_grids``-th shared value."""

    windows: int
    seeds: tuple[int, ...]
    episode_s: float
    per_pool: bool
    radius: int
    thin_grids: int


def load_suite(name_or_path: str) -> dict[str, Any]:
    """The suite definition (a built-in name or a YAML path)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"--suite: file not found: {path}")
        text = path.read_text()
    elif name_or_path == "generalization":
        text = resources.files("rlscale.evaluate").joinpath("generalization.yaml").read_text()
    else:
        raise ConfigError(f"--suite: unknown suite {name_or_path!r}; built-in: generalization "
                          f"(or a YAML path)")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("families"), list):
        raise ConfigError(f"--suite {name_or_path}: expected a mapping with a 'families' list")
    return raw


def held_out_families(name_or_path: str = "generalization") -> list[dict[str, Any]]:
    """The families a suite holds out (``name``, ``workload``, ...), for training to exclude."""
    return list(load_suite(name_or_path)["families"])


def settings(suite: dict[str, Any], quick: bool) -> RunSettings:
    """The suite's run settings (its ``quick`` section overriding them with ``quick``)."""
    merged = {**suite, **(suite.get("runs") or {}), **((suite.get("quick") or {}) if quick else {})}
    seeds = merged.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"suite: seeds must be a list of integers, got {seeds!r}")
    return RunSettings(int(merged.get("windows", 2)), tuple(seeds),
                       float(merged.get("episode_s", 900)), bool(merged.get("per_pool", True)),
                       int(merged.get("radius", 1)), int(merged.get("thin_grids", 1)))


def traces_dir() -> Path:
    """``$RLSCALE_TRACES`` or :data:`DEFAULT_TRACES`."""
    return Path(os.environ.get("RLSCALE_TRACES", str(DEFAULT_TRACES)))


def family_scenario(base: dict[str, Any], family: dict[str, Any], target: tuple[str, float],
                    run: RunSettings) -> tuple[dict[str, Any], str]:
    """The family's scenario mapping (base pools and settings, the family's workload scaled to
    ``target`` load on the base cluster) and a note on its load."""
    raw = {**base, "name": f"{base.get('name', 'base')}-{family['name']}"}
    workload = dict(family["workload"])
    if "trace" in workload:
        workload["trace"] = str(traces_dir() / str(workload["trace"]))
    raw["workload"] = workload
    raw["episode"] = {**(base.get("episode") or {}), "duration_s": run.episode_s}
    raw.pop("splits", None)
    base_scenario = scenario_from_dict({**raw, "workload": workload})
    load = measure(base_scenario.build_workload(np.random.default_rng(0)),
                   scenario_from_dict(base).cluster, base_scenario.slo)
    factor = factor_for(load, *target)
    raw["workload"] = scaled_config(workload, factor)
    if "gpus" in family:
        raw["gpus"] = {**(base.get("gpus") or {}), **family["gpus"]}
    if "trace" not in workload:
        duration = float(workload.get("duration_s", 3600))
        offsets = family.get("offsets_s") or [duration * k / run.windows
                                              for k in range(run.windows)]
        windows = [{"seed": 9201 + k, "offset_s": float(o)}
                   for k, o in enumerate(offsets[:run.windows])]
        raw["splits"] = {"validation": windows[:1], "test": windows}
    note = f"rate x{factor:.3f} to match the base load (family before scaling: {load.text()})"
    return raw, note


def base_target(base: dict[str, Any], load: object) -> tuple[str, float]:
    """The load every family is scaled to: ``match`` (the base workload's fraction of
    capacity) or an explicit target (see :func:`~rlscale.evaluate.load.parse_target`)."""
    if load in (None, "match"):
        scenario = scenario_from_dict(base)
        measured = measure(scenario.build_workload(np.random.default_rng(0)),
                           scenario.cluster, scenario.slo)
        return "fraction", measured.fraction
    return parse_target(str(load))


def run_family(ref: str, windows: Sequence[Window], run: RunSettings,
               policies: list[PolicySpec], target: float, *, workers: int | None,
               progress: bool) -> tuple[list[dict[str, Any]], Curves,
                                        dict[str, dict[str, EqualSlo]]]:
    """Policies' rows, the curves and the policies' cost at equal SLO on one family."""

    def batch(specs: list[PolicySpec], description: str) -> list[dict[str, Any]]:
        return run_tasks(tasks_for(ref, specs, windows, run.seeds, "test"), workers=workers,
                         progress=progress, description=description)

    pools = len(scenario_from_dict(raw_scenario(ref)[0]).cluster.pools)
    curves = sweep([*CURVE_BASELINES, "floor"], batch, pools=pools, target=target,
                   per_pool=run.per_pool, radius=run.radius, thin=run.thin_grids)
    rows = batch(policies, "policies")
    return rows, curves, judge(rows, curves, [p.label for p in policies])


def family_table(rows: list[dict[str, Any]], curves: Curves,
                 judged: dict[str, dict[str, EqualSlo]]) -> str:
    """The policies and each curve's best setting, with costs at equal SLO."""
    best = [row for row in curves.rows if row["policy"] in curves.best.values()]
    aggregated = aggregate([*rows, *best])
    renamed = {label: f"{name} best: {label}" for name, label in curves.best.items()}
    for row in aggregated:
        row["policy"] = renamed.get(row["policy"], row["policy"])
    return markdown_table(aggregated, judged)


def summary_table(judged: dict[str, dict[str, dict[str, EqualSlo]]]) -> str:
    """Geometric means across families of each policy's cost at equal SLO per curve (over
    the families where it is defined), the families where the policy is worse (dearer at
    equal SLO, or below every point of the curve: less reliable than any setting of it) and
    those where the curve never reaches the policy's attainment."""
    policies = list(dict.fromkeys(p for per in judged.values() for p in per))
    curves = list(dict.fromkeys(c for per in judged.values() for pol in per.values()
                                for c in pol))
    lines = ["| policy | " + " | ".join(f"vs {c} (geo. mean)" for c in curves) + " |",
             "|" + "---|" * (len(curves) + 1)]
    for policy in policies:
        cells = []
        for curve in curves:
            results = [per[policy][curve] for per in judged.values()
                       if policy in per and curve in per[policy]]
            mean = geometric_mean([r.ratio for r in results if r.comparable])
            unreached = sum(not r.reached for r in results)
            below = sum(r.below for r in results)
            dearer = sum(r.comparable and r.ratio > 1.0 for r in results)
            cell = "n/a" if math.isnan(mean) else f"{mean:.2f}x"
            cell += f" ({dearer + below} worse"
            cell += f": {below} below" if below else ""
            cell += f", {unreached} unreached)" if unreached else ")"
            cells.append(cell)
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_report(folder: Path) -> tuple[str, dict[str, dict[str, EqualSlo]]]:
    """A family's table and its policies' costs at equal SLO, from its ``results.json``."""
    data = json.loads((folder / "results.json").read_text())
    meta, runs = data["meta"], data["runs"]
    points: dict[str, list[str]] = meta["curves"]
    on_curves = {label for labels in points.values() for label in labels}
    rows = [r for r in runs if r["policy"] not in on_curves]
    curves = Curves([r for r in runs if r["policy"] in on_curves], points, meta["best"])
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    judged = judge(rows, curves, policies)
    lines = [meta["note"], *meta["notes"],
             f"{len(meta['windows'])} window(s) x {len(meta['seeds'])} seed(s)", "",
             family_table(rows, curves, judged)]
    return "\n".join(lines), judged


def suite_report(out: Path, families: Sequence[dict[str, Any]], header: str) -> str:
    """Every family's table (from the results in ``out/<family>/``) and the summary; writes
    ``suite.md`` and ``suite.json``."""
    text = [header]
    judged_all: dict[str, dict[str, dict[str, EqualSlo]]] = {}
    for family in families:
        title = f"\n## {family['name']}: {family.get('description', '')}".rstrip()
        folder = out / str(family["name"])
        if not (folder / "results.json").is_file():
            text += [title, "not run (see above)"]
            continue
        table, judged_all[str(family["name"])] = family_report(folder)
        (folder / "results.md").write_text(table + "\n")
        text += [title, table]
    text += ["\n## summary: cost at equal SLO, geometric mean across families "
             "(worse: families where the ratio > 1.00)", "", summary_table(judged_all)]
    (out / "suite.md").write_text("\n".join(text) + "\n")
    (out / "suite.json").write_text(json.dumps(
        {fam: {pol: {c: r.__dict__ for c, r in per.items()} for pol, per in judged.items()}
         for fam, judged in judged_all.items()}, indent=1, default=str) + "\n")
    return "\n".join(text)


def run_suite(name: str, policies: list[PolicySpec], out: Path, *, quick: bool,
              families: Sequence[str] | None, workers: int | None, progress: bool,
              slo_target: float, tables_only: bool = False) -> str:
    """Run the suite (or with ``tables_only`` rebuild its tables from the results already in
    ``out``); writes per-family results, ``suite.md`` and ``suite.json``; returns the text."""
    suite = load_suite(name)
    run = settings(suite, quick)
    base, _ = raw_scenario(str(suite.get("base", "hetero-3pool")))
    target = base_target(base, suite.get("load", "match"))
    chosen = [f for f in suite["families"] if not families or f["name"] in families]
    unknown = sorted(set(families or ()) - {f["name"] for f in suite["families"]})
    if unknown:
        raise ConfigError(f"--families: unknown {unknown}; the suite has "
                          f"{[f['name'] for f in suite['families']]}")
    header = (f"suite {suite.get('name', name)} on {base.get('name')}'s pools; load: "
              f"{target[1]:.3g} ({target[0]}) for every family; {run.windows} window(s) x "
              f"{len(run.seeds)} seed(s) of {run.episode_s:g} s per family")
    for family in [] if tables_only else chosen:
        folder = out / family["name"]
        trace = family["workload"].get("trace")
        if trace is not None and not (traces_dir() / str(trace)).is_file():
            header += (f"\n{family['name']} skipped: trace {traces_dir() / str(trace)} not "
                       f"found (set RLSCALE_TRACES)")
            continue
        raw, note = family_scenario(base, family, target, run)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "family.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        prepared = prepare(folder / "family.yaml", folder)
        config = env_config(prepared.scenario)
        windows = scenario_splits(prepared.scenario, config.episode.duration_s).test
        windows = windows[:run.windows]
        rows, curves, _ = run_family(prepared.ref, windows, run, policies, slo_target,
                                     workers=workers, progress=progress)
        write_results(folder, [*rows, *curves.rows], aggregate([*rows, *curves.rows]),
                      {"family": family["name"], "note": note, "notes": prepared.notes,
                       "windows": [w.__dict__ for w in windows], "seeds": list(run.seeds),
                       "curves": curves.points, "best": curves.best})
        points = {n: [(r["slo_attainment"], r["cost_usd"]) for r in aggregate(
            [row for row in curves.rows if row["policy"] in labels])]
            for n, labels in curves.points.items()}
        plot_pareto(folder / "pareto.png", aggregate(rows), slo_target, points)
    return suite_report(out, chosen, header)
