"""Prometheus histogram arithmetic on classic (cumulative-bucket) histograms.

* **Percentiles** come from cumulative bucket counts with Prometheus' ``histogram_quantile``
  (linear interpolation inside the bucket, lower bound 0 for the first bucket, the highest
  finite edge when the rank falls in ``+Inf``); NaN when there is no observation.
* The **fraction above a threshold** interpolates linearly inside the bucket holding it
  (observations in ``+Inf`` count as above a threshold beyond the last edge).

:func:`quantiles` and :func:`fractions_above` work on one histogram per row (the observation
builder's pools); :func:`histogram_quantile` and :func:`histogram_fraction_above` on one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def quantiles(edges: FloatArray, cum: FloatArray, qs: FloatArray) -> FloatArray:
    """Prometheus ``histogram_quantile`` for each row of ``cum`` (P x K cumulative counts,
    ``+Inf`` last) and each ``q`` in ``qs`` (all in [0, 1]): a P x Q array, NaN for empty rows."""
    rows, k = cum.shape
    if k < 2:
        return np.full((rows, len(qs)), np.nan)
    cum = np.maximum.accumulate(cum, axis=1)
    counts = cum[:, -1:]
    rank = counts * qs  # P x Q
    b = (cum[:, None, :] < rank[:, :, None]).sum(axis=2)  # first bucket with count >= rank
    np.minimum(b, k - 1, out=b)
    # Bucket b spans (edges[b - 1], edges[b]] with cumulative counts below_b .. cum_b (the
    # first from 0, the +Inf one ends at the last edge); read through flat indices.
    inside = b > 0
    flat = cum.ravel()
    at = b + np.arange(0, rows * k, k)[:, None]
    cum_b = flat[at]
    below_b = np.where(inside, flat[at - 1], 0.0)
    lower = np.where(inside, edges[b - 1], 0.0)
    upper = edges[np.minimum(b, k - 2)]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower + (upper - lower) * ((rank - below_b) / (cum_b - below_b))
    value = np.where(b == k - 1, edges[-1], value)
    if edges[0] <= 0:
        value = np.where(b == 0, edges[0], value)
    return np.where(counts > 0, value, np.nan)


def fractions_above(edges: FloatArray, cum: FloatArray, threshold: float) -> FloatArray:
    """Fraction of each row's observations above ``threshold`` (NaN for empty rows)."""
    rows, k = cum.shape
    if k < 2:
        return np.full(rows, np.nan)
    cum = np.maximum.accumulate(cum, axis=1)
    counts = cum[:, -1]
    j = int(np.searchsorted(edges, threshold, side="left"))  # first edge >= threshold
    if j == len(edges):  # beyond the last finite edge: +Inf observations count as above
        at_or_below = cum[:, j - 1]
    else:
        lo = 0.0 if j == 0 else float(edges[j - 1])
        below = np.zeros(rows) if j == 0 else cum[:, j - 1]
        at_or_below = below + (cum[:, j] - below) * ((threshold - lo) / (edges[j] - lo))
        at_or_below = np.clip(at_or_below, 0.0, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 1.0 - at_or_below / counts, np.nan)


def histogram_quantile(q: float, edges: Sequence[float], cumulative: Sequence[float]) -> float:
    """Prometheus' ``histogram_quantile(q, ...)`` of one classic histogram.

    Args:
        q: the quantile; NaN gives NaN, below 0 gives -inf, above 1 gives +inf (as PromQL).
        edges: finite bucket upper bounds (``le``), increasing; cumulative: counts per edge
            plus the ``+Inf`` bucket last (e.g. bucket deltas over an interval).

    Returns:
        The interpolated value in the edges' unit; NaN without observations.
    """
    if math.isnan(q):
        return math.nan
    if q < 0 or q > 1:
        return -math.inf if q < 0 else math.inf
    return float(quantiles(_edges(edges, cumulative), np.asarray([cumulative], float),
                            np.array([q]))[0, 0])


def histogram_fraction_above(threshold: float, edges: Sequence[float],
                             cumulative: Sequence[float]) -> float:
    """Fraction of one histogram's observations above ``threshold`` (same units as ``edges``),
    interpolating linearly inside the bucket that holds it; NaN without observations."""
    return float(fractions_above(_edges(edges, cumulative), np.asarray([cumulative], float),
                                 threshold)[0])


def _edges(edges: Sequence[float], cumulative: Sequence[float]) -> FloatArray:
    if len(cumulative) != len(edges) + 1:
        raise ValueError(f"expected {len(edges) + 1} cumulative counts (one per edge plus "
                         f"+Inf), got {len(cumulative)}")
    return np.asarray(edges, float)
