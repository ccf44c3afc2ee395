"""What happened to the requests that ended during one control step (for ``info`` and reward)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.fluid.log import ArrayLog
from rlscale.sim.spec import SLO
from rlscale.sim.stats import RequestLog


def ended_since(log: RequestLog | ArrayLog, start: int, slo: SLO) -> dict[str, Any]:
    """Counts, SLO attainment and latency percentiles of log rows ``start:`` (seconds).

    ``slo_attainment`` is the share of ended requests that finished within both SLOs (failed
    requests are misses); it is 1.0 when no request ended, and ``requests`` says so.
    """
    failure = np.asarray(log.int_columns["failure"][start:], dtype=np.int64)
    ended = len(failure)
    if ended == 0:
        nan = math.nan
        return {"requests": 0, "completed": 0, "failed": 0, "slo_met": 0, "slo_attainment": 1.0,
                "ttft_p50_s": nan, "ttft_p90_s": nan, "ttft_p99_s": nan, "itl_p50_s": nan,
                "itl_p90_s": nan, "itl_p99_s": nan, "e2e_p50_s": nan, "e2e_p90_s": nan,
                "e2e_p99_s": nan, "output_tokens": 0}
    ttft = np.asarray(log.columns["ttft_s"][start:])
    itl = np.asarray(log.columns["itl_s"][start:])
    e2e = np.asarray(log.columns["e2e_s"][start:])
    done = failure == 0
    met = int((done & (ttft <= slo.ttft_s) & (itl <= slo.itl_s)).sum())
    out: dict[str, Any] = {
        "requests": ended,
        "completed": int(done.sum()),
        "failed": int(ended - done.sum()),
        "slo_met": met,
        "slo_attainment": met / ended,
        "output_tokens": int(np.asarray(log.int_columns["output_tokens"][start:])[done].sum()),
    }
    finished = np.stack([ttft, itl, e2e])[:, done]
    quantiles = (row_percentiles(finished) if finished.shape[1]
                 else np.full((3, 3), math.nan))
    for column, name in enumerate(("ttft", "itl", "e2e")):
        p50, p90, p99 = quantiles[:, column].tolist()
        out[f"{name}_p50_s"], out[f"{name}_p90_s"], out[f"{name}_p99_s"] = p50, p90, p99
    return out


_PERCENTILES = np.array([50.0, 90.0, 99.0])


def row_percentiles(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.percentile(rows, [50, 90, 99], axis=1)`` (a 3 x rows array), value for value, from
    one sort: numpy's default linear interpolation between the order statistics around
    ``(n - 1) q``, in its own arithmetic. ``rows`` has at least one column; NaN goes to numpy."""
    if np.isnan(rows).any():
        return np.asarray(np.percentile(rows, _PERCENTILES, axis=1))
    count = rows.shape[1]
    ordered = np.sort(rows, axis=1)
    virtual = (count - 1) * np.true_divide(_PERCENTILES, 100)
    below = np.floor(virtual)
    last = virtual >= count - 1
    lower = np.where(last, count - 1, below).astype(np.intp)
    upper = np.where(last, count - 1, below + 1).astype(np.intp)
    gamma = np.where(last, 0.0, virtual - below)
    a, b = ordered[:, lower], ordered[:, upper]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out.T
