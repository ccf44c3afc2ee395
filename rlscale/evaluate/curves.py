"""Cost-versus-attainment curves and "cost at equal SLO", with bootstrap confidence intervals.

A curve is a set of points, each a setting of one baseline's knobs run on the same windows and
seeds as the policy judged against it. Its frontier is the set of points no other point beats
on both cost and attainment, joined by straight lines (mixing two settings over time reaches
any point between them). A policy's **cost at equal SLO** against a curve is

    cost of the policy / cost of the curve at the policy's mean attainment,

below 1 when the policy is cheaper than the baseline tuned to the same attainment. A policy
whose attainment lies above every point of the curve (by more than
:data:`ATTAINMENT_TOLERANCE`) has no equal: the ratio is undefined (the baseline cannot reach
it) and :func:`equal_slo_ratio` reports ``reached=False``. A policy attaining less than every
point has no equal either (``below=True``): no setting of the baseline fails the SLO that
often, so a lower cost bought with failures is not "cheaper at equal SLO"; the suite counts
such a family among those where the policy is worse.

The confidence interval resamples the (window, seed) runs with replacement (paired: the policy
and every curve point take the same resample), recomputes both means, the frontier and the
ratio, and takes the 2.5th and 97.5th percentiles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

BOOTSTRAP_SAMPLES = 1000
"""Resamples of the (window, seed) runs behind each confidence interval."""

ATTAINMENT_TOLERANCE = 0.001
"""A policy attaining at most this much (0.1 percentage point) above a curve's best point is
compared with that point: near 100 % attainment, differences this small are noise."""


def frontier(attainment: Sequence[float], cost: Sequence[float]) -> list[tuple[float, float]]:
    """The Pareto-efficient (attainment, cost) points, by rising attainment and cost."""
    points = sorted(zip(attainment, cost, strict=True), key=lambda p: (-p[0], p[1]))
    kept: list[tuple[float, float]] = []
    for att, cst in points:
        if not kept or cst < kept[-1][1]:
            kept.append((att, cst))
    return kept[::-1]


def cost_at(points: Sequence[tuple[float, float]], attainment: float) -> float:
    """The frontier's cost at ``attainment`` (linear between points); NaN outside its reach
    (above its best point's attainment or below its least, by more than
    :data:`ATTAINMENT_TOLERANCE`)."""
    if not points or not (points[0][0] - ATTAINMENT_TOLERANCE <= attainment
                          <= points[-1][0] + ATTAINMENT_TOLERANCE):
        return math.nan
    attainment = min(max(attainment, points[0][0]), points[-1][0])
    if attainment <= points[0][0]:
        return points[0][1]
    for (a0, c0), (a1, c1) in itertools.pairwise(points):
        if a0 <= attainment <= a1:
            share = 0.0 if a1 == a0 else (attainment - a0) / (a1 - a0)
            return c0 + share * (c1 - c0)
    return points[-1][1]


@dataclass(frozen=True)
class RunMatrix:
    """Per-run attainment and cost of named settings over the same runs (columns).

    Attributes:
        attainment / cost: ``{setting label: array over runs}`` (fractions; US dollars).
    """

    attainment: Mapping[str, NDArray[np.float64]]
    cost: Mapping[str, NDArray[np.float64]]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]]) -> RunMatrix:
        """From evaluation rows (``policy``, ``window``, ``seed``, ``slo_attainment``,
        ``cost_usd``); every label must have run on the same (window, seed) pairs."""
        runs = sorted({(str(r["window"]), int(str(r["seed"]))) for r in rows})
        index = {run: k for k, run in enumerate(runs)}
        attainment: dict[str, NDArray[np.float64]] = {}
        cost: dict[str, NDArray[np.float64]] = {}
        for row in rows:
            label = str(row["policy"])
            if label not in attainment:
                attainment[label] = np.full(len(runs), np.nan)
                cost[label] = np.full(len(runs), np.nan)
            k = index[(str(row["window"]), int(str(row["seed"])))]
            attainment[label][k] = float(str(row["slo_attainment"]))
            cost[label][k] = float(str(row["cost_usd"]))
        for label, values in attainment.items():
            if np.isnan(values).any():
                raise ValueError(f"curves: {label!r} did not run on every (window, seed) of "
                                 f"the others; cannot compare at equal SLO")
        return cls(attainment, cost)

    @property
    def runs(self) -> int:
        """Number of (window, seed) runs."""
        return len(next(iter(self.attainment.values()))) if self.attainment else 0


@dataclass(frozen=True)
class EqualSlo:
    """A policy's cost at equal SLO against one curve.

    Attributes:
        ratio: policy cost / curve cost at the policy's attainment (NaN when not reached).
        low / high: the 95 % bootstrap interval of the ratio (NaN where undefined).
        reached: whether the curve reaches the policy's attainment at all.
        curve_cost_usd: the curve's cost at that attainment; best_attainment: the curve's
            highest mean attainment.
        below: the policy attains less than every point of the curve (no equal; NaN ratio);
            least_attainment: the curve's lowest mean attainment on its frontier.
    """

    ratio: float
    low: float
    high: float
    reached: bool
    curve_cost_usd: float
    best_attainment: float
    below: bool = False
    least_attainment: float = math.nan

    @property
    def comparable(self) -> bool:
        """Whether the ratio is defined (the curve has a point at the policy's attainment)."""
        return self.reached and not self.below

    def text(self) -> str:
        """``0.82x [0.75, 0.90]``, ``unreached (best 97.1%)`` or ``below (least 80.0%)``."""
        if not self.reached:
            return f"unreached (best {self.best_attainment:.1%})"
        if self.below:
            return f"below (least {self.least_attainment:.1%})"
        if math.isnan(self.low):
            return f"{self.ratio:.2f}x"
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def _ratio(policy_att: float, policy_cost: float, att: NDArray[np.float64],
           cost: NDArray[np.float64]) -> float:
    reference = cost_at(frontier(list(att), list(cost)), policy_att)
    return policy_cost / reference if reference > 0 else math.nan


def equal_slo_ratio(matrix: RunMatrix, policy: str, curve: Sequence[str],
                    seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> EqualSlo:
    """``policy``'s cost at equal SLO against the curve of settings ``curve``."""
    if not curve:
        raise ValueError("curves: an empty curve")
    p_att, p_cost = matrix.attainment[policy], matrix.cost[policy]
    c_att = np.stack([matrix.attainment[c] for c in curve])  # settings x runs
    c_cost = np.stack([matrix.cost[c] for c in curve])
    mean_att, mean_cost = float(p_att.mean()), float(p_cost.mean())
    points = frontier(list(c_att.mean(axis=1)), list(c_cost.mean(axis=1)))
    reference = cost_at(points, mean_att)
    least, best = float(points[0][0]), float(points[-1][0])
    if math.isnan(reference):
        below = mean_att < least
        return EqualSlo(math.nan, math.nan, math.nan, below, math.nan, best, below, least)
    ratio = mean_cost / reference
    runs = len(p_att)
    if runs < 2:
        return EqualSlo(ratio, math.nan, math.nan, True, reference, best, False, least)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        pick = rng.integers(0, runs, runs)
        draws.append(_ratio(float(p_att[pick].mean()), float(p_cost[pick].mean()),
                            c_att[:, pick].mean(axis=1), c_cost[:, pick].mean(axis=1)))
    finite = np.asarray([d for d in draws if math.isfinite(d)])
    if len(finite) < samples // 2:  # the curve mostly fails to reach the policy's attainment
        return EqualSlo(ratio, math.nan, math.nan, True, reference, best, False, least)
    low, high = np.percentile(finite, [2.5, 97.5])
    return EqualSlo(ratio, float(low), float(high), True, reference, best, False, least)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of the finite positive values (NaN if none)."""
    clean = [v for v in values if math.isfinite(v) and v > 0]
    if not clean:
        return math.nan
    return float(math.exp(sum(math.log(v) for v in clean) / len(clean)))
