"""What happened to requests: those that ended during one control step (for ``info`` and
reward), and those that arrived in an episode's scored time (for its summary)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.fluid.log import ArrayLog
from rlscale.sim.spec import SLO
from rlscale.sim.stats import RequestLog


def arrived_between(data: dict[str, NDArray[Any]], start_s: float, end_s: float,
                    slo: SLO) -> dict[str, Any]:
    """Counts, SLO attainment, output throughput (tokens/s) and latency percentiles and means
    (seconds) of the requests of ``data`` (a request log's arrays) that arrived in
    ``[start_s, end_s)``; attainment is 1.0 when none did."""
    scored = (data["arrival_s"] >= start_s) & (data["arrival_s"] < end_s)
    subset = {key: values[scored] for key, values in data.items()}
    done = subset["failure"] == 0
    met = done & (subset["ttft_s"] <= slo.ttft_s) & (subset["itl_s"] <= slo.itl_s)
    summary: dict[str, Any] = {
        "requests": int(scored.sum()),
        "completed": int(done.sum()),
        "failed": int((~done).sum()),
        "slo_attainment": float(met.mean()) if scored.any() else 1.0,
        "throughput_tok_s": float(subset["output_tokens"][done].sum())
        / max(end_s - start_s, 1e-9),
    }
    for name in ("ttft", "itl", "e2e"):
        values = subset[f"{name}_s"][done]
        quantiles = np.percentile(values, [50, 90, 99]) if len(values) else [np.nan] * 3
        summary.update({f"{name}_p50_s": float(quantiles[0]),
                        f"{name}_p90_s": float(quantiles[1]),
                        f"{name}_p99_s": float(quantiles[2]),
                        f"{name}_mean_s": float(values.mean()) if len(values) else np.nan})
    return summary


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
