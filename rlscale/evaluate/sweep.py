"""Sweep each baseline's knob(s) into a cost-versus-attainment curve on the evaluated windows.

* Every baseline runs each value of its grid (``TUNE_GRID``), one knob shared by all pools.
* The per-Deployment scalers (``PER_POOL``: HPA, KPA, KEDA — a cluster runs one per pool, each
  with its own target) are then tuned per pool by one pass of coordinate descent from the best
  shared setting: for each pool in turn, its value moves over the ``radius`` grid values on
  either side while the other pools keep theirs, and the best setting found so far is kept
  (:func:`best_setting`). Every setting tried is a point of the curve, so the curve holds the
  fair strongest version of each scaler.
* The floor's curve is the clairvoyant schedule at a few capacity fractions
  (``FLOOR_FRACTIONS``), each run in the simulator.

Each point runs on every (window, seed) of the evaluation, so curves and policies share runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlscale.evaluate.curves import EqualSlo, RunMatrix, equal_slo_ratio
from rlscale.evaluate.policies import PolicySpec, tunable
from rlscale.evaluate.report import aggregate

PER_POOL = ("hpa", "hpa-running", "kpa", "keda")
"""Baselines a cluster runs once per pool (per Deployment), so their knob is tuned per pool."""

FLOOR_FRACTIONS = (1.0, 0.85, 0.7)
"""Capacity fractions of the floor's curve (1.0 is the bound itself)."""

RunBatch = Callable[[list[PolicySpec], str], list[dict[str, Any]]]
"""Runs specs on the evaluation's windows and seeds (description for progress); returns rows."""


def best_setting(summary: Mapping[str, Mapping[str, Any]], labels: Sequence[str],
                 target: float) -> str:
    """The cheapest of ``labels`` whose mean attainment reaches ``target``, else the most
    attaining (then cheapest) one. ``summary`` maps labels to aggregated rows."""
    meeting = [k for k in labels if summary[k]["slo_attainment"] >= target]
    if meeting:
        return min(meeting, key=lambda k: summary[k]["cost_usd"])
    return max(labels, key=lambda k: (summary[k]["slo_attainment"], -summary[k]["cost_usd"]))


@dataclass
class Curves:
    """Rows of every point run, and the labels of each curve's points.

    Attributes:
        rows: one row per (point, window, seed).
        points: ``{curve name: [labels]}`` (a baseline's name, or ``floor``).
        best: ``{curve name: label}`` — the best setting on the evaluated windows
            (:func:`best_setting`), shown in the tables.
    """

    rows: list[dict[str, Any]]
    points: dict[str, list[str]]
    best: dict[str, str]


def shared_specs(name: str, thin: int = 1) -> list[PolicySpec]:
    """One spec per grid value of baseline ``name`` (its knob shared by all pools); with
    ``thin`` > 1 only every ``thin``-th value (the floor's fractions are always all kept)."""
    if name == "floor":
        return [PolicySpec("floor", {"capacity_fraction": f}) for f in FLOOR_FRACTIONS]
    knob = tunable(PolicySpec(name))
    if knob is None:
        raise ValueError(f"sweep: {name!r} has no tunable knob")
    return [PolicySpec(name, {knob[0]: value}) for value in knob[1][::max(1, thin)]]


def neighbours(spec: PolicySpec, pool: int, pools: int, radius: int) -> list[PolicySpec]:
    """``spec`` with pool ``pool``'s knob moved up to ``radius`` grid steps either way."""
    knob = tunable(spec)
    if knob is None:
        raise ValueError(f"sweep: {spec.name!r} has no tunable knob")
    name, grid = knob
    value = spec.knobs[name]
    values = list(value) if isinstance(value, (list, tuple)) else [value] * pools
    here = min(range(len(grid)), key=lambda k: abs(grid[k] - values[pool]))
    out = []
    for k in range(max(0, here - radius), min(len(grid), here + radius + 1)):
        if k != here:
            moved = list(values)
            moved[pool] = grid[k]
            out.append(PolicySpec(spec.name, {**spec.knobs, name: moved}))
    return out


def sweep(names: Sequence[str], run: RunBatch, *, pools: int, target: float,
          per_pool: bool = True, radius: int = 2, thin: int = 1) -> Curves:
    """Curves of ``names`` (baselines and/or ``floor``) from the runs ``run`` makes
    (``thin``: see :func:`shared_specs`)."""
    specs = [spec for name in names for spec in shared_specs(name, thin)]
    rows = run(specs, f"sweeping {len(specs)} shared settings")
    points = {name: [s.label for s in specs if s.name == name] for name in names}
    summary = {row["policy"]: row for row in aggregate(rows)}
    best = {name: best_setting(summary, labels, target) for name, labels in points.items()}
    by_label = {s.label: s for s in specs}
    tuned = [name for name in names if per_pool and name in PER_POOL and pools > 1]
    for pool in range(pools if tuned else 0):
        batch = {name: neighbours(by_label[best[name]], pool, pools, radius) for name in tuned}
        fresh = [s for specs_ in batch.values() for s in specs_ if s.label not in by_label]
        if not fresh:
            continue
        new_rows = run(fresh, f"per-pool sweep, pool {pool + 1}/{pools}")
        rows.extend(new_rows)
        summary.update({row["policy"]: row for row in aggregate(new_rows)})
        for spec in fresh:
            by_label[spec.label] = spec
            points[spec.name].append(spec.label)
        for name in tuned:
            candidates = [best[name], *(s.label for s in batch[name])]
            best[name] = best_setting(summary, candidates, target)
    return Curves(rows, points, best)


def judge(policy_rows: Sequence[Mapping[str, Any]], curves: Curves,
          policies: Sequence[str]) -> dict[str, dict[str, EqualSlo]]:
    """``{policy: {curve: cost at equal SLO}}`` for each of ``policies`` (labels in
    ``policy_rows``) against each curve; the runs of both must share windows and seeds."""
    matrix = RunMatrix.from_rows([*policy_rows, *curves.rows])
    return {policy: {name: equal_slo_ratio(matrix, policy, labels)
                     for name, labels in curves.points.items()}
            for policy in policies}
