"""Request-level statistics: every finished or failed request, and summaries over them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.request import Request
from rlscale.sim.spec import SLO

FAIL_GATEWAY_TIMEOUT = 1
"""Failure reason: no ready replica within the gateway timeout."""
FAIL_POD_LOST = 2
"""Failure reason: the pod crashed (or its GPUs were lost) and retries were exhausted."""
FAIL_DRAIN_TIMEOUT = 3
"""Failure reason: still running when a draining pod's grace period ended."""
FAIL_TOO_LONG = 4
"""Failure reason: the prompt does not fit the replica's ``max_model_len`` (HTTP 400 in vLLM)."""

FAILURE_NAMES = {
    FAIL_GATEWAY_TIMEOUT: "gateway_timeout",
    FAIL_POD_LOST: "pod_lost",
    FAIL_DRAIN_TIMEOUT: "drain_timeout",
    FAIL_TOO_LONG: "too_long",
}

_COLUMNS = ("arrival_s", "ttft_s", "itl_s", "e2e_s", "queue_s", "end_s")
_INT_COLUMNS = ("id", "pool", "prompt_tokens", "output_tokens", "preemptions", "failure")


class RequestLog:
    """Appends one row per request that ended (finished or failed); cheap on the hot path."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float]] = {c: [] for c in _COLUMNS}
        self.int_columns: dict[str, list[int]] = {c: [] for c in _INT_COLUMNS}

    def __len__(self) -> int:
        return len(self.columns["arrival_s"])

    def finished(self, request: Request) -> None:
        """Record a request that produced all its output tokens."""
        c, ic = self.columns, self.int_columns
        c["arrival_s"].append(request.arrival_s)
        c["ttft_s"].append(request.first_token_s - request.arrival_s)
        c["itl_s"].append(request.itl_s)
        c["e2e_s"].append(request.finish_s - request.arrival_s)
        c["queue_s"].append(request.first_scheduled_s - request.dispatch_s)
        c["end_s"].append(request.finish_s)
        ic["id"].append(request.id)
        ic["pool"].append(request.pool)
        ic["prompt_tokens"].append(request.prompt_tokens)
        ic["output_tokens"].append(request.output_tokens)
        ic["preemptions"].append(request.preemptions)
        ic["failure"].append(0)

    def failed(self, request: Request, reason: int, at_s: float) -> None:
        """Record a request that ended without its output (``reason`` is a ``FAIL_*`` code)."""
        c, ic = self.columns, self.int_columns
        nan = math.nan
        c["arrival_s"].append(request.arrival_s)
        c["ttft_s"].append(nan)
        c["itl_s"].append(nan)
        c["e2e_s"].append(nan)
        c["queue_s"].append(nan)
        c["end_s"].append(at_s)
        ic["id"].append(request.id)
        ic["pool"].append(request.pool)
        ic["prompt_tokens"].append(request.prompt_tokens)
        ic["output_tokens"].append(request.output_tokens)
        ic["preemptions"].append(request.preemptions)
        ic["failure"].append(reason)

    def arrays(self) -> dict[str, NDArray[Any]]:
        """All rows as numpy arrays, one per column."""
        out: dict[str, NDArray[Any]] = {k: np.asarray(v, dtype=np.float64)
                                        for k, v in self.columns.items()}
        out.update({k: np.asarray(v, dtype=np.int64) for k, v in self.int_columns.items()})
        return out

    def write_csv(self, path: Path) -> None:
        """Write one row per request, sorted by request id (times in seconds)."""
        data = self.arrays()
        order = np.argsort(data["id"], kind="stable")
        names = ["id", "arrival_s", "pool", "prompt_tokens", "output_tokens", "ttft_s", "itl_s",
                 "e2e_s", "queue_s", "end_s", "preemptions", "failure"]
        with path.open("w") as out:
            out.write(",".join(names) + "\n")
            for i in order:
                row = []
                for name in names:
                    value = data[name][i]
                    if name == "failure":
                        row.append(FAILURE_NAMES.get(int(value), ""))
                    elif data[name].dtype == np.int64:
                        row.append(str(int(value)))
                    else:
                        row.append("" if math.isnan(value) else f"{value:.6f}")
                out.write(",".join(row) + "\n")


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles and mean of one latency over finished requests, seconds."""

    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: NDArray[np.float64]) -> LatencySummary:
        """Summarize ``values`` (NaN where there are none)."""
        if len(values) == 0:
            return cls(math.nan, math.nan, math.nan, math.nan)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(values.mean()))

    def as_dict(self) -> dict[str, float]:
        """``{"p50": ..., "p90": ..., "p99": ..., "mean": ...}``."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean}


def slo_met(data: dict[str, NDArray[Any]], slo: SLO) -> NDArray[np.bool_]:
    """Per request: finished with TTFT and mean inter-token latency within the SLO."""
    ok: NDArray[np.bool_] = (
        (data["failure"] == 0) & (data["ttft_s"] <= slo.ttft_s) & (data["itl_s"] <= slo.itl_s)
    )
    return ok


def summarize_requests(log: RequestLog, slo: SLO) -> dict[str, Any]:
    """Counts, SLO attainment and latency percentiles over every request in ``log``."""
    data = log.arrays()
    done = data["failure"] == 0
    n = len(log)
    failures = {name: int((data["failure"] == code).sum()) for code, name in FAILURE_NAMES.items()}
    return {
        "requests": n,
        "completed": int(done.sum()),
        "failed": n - int(done.sum()),
        "failed_by_reason": failures,
        "slo_attainment": float(slo_met(data, slo).mean()) if n else math.nan,
        "ttft_s": LatencySummary.of(data["ttft_s"][done]).as_dict(),
        "itl_s": LatencySummary.of(data["itl_s"][done]).as_dict(),
        "e2e_s": LatencySummary.of(data["e2e_s"][done]).as_dict(),
        "queue_s": LatencySummary.of(data["queue_s"][done]).as_dict(),
        "preemptions": int(data["preemptions"].sum()),
        "output_tokens": int(data["output_tokens"][done].sum()),
        "prompt_tokens": int(data["prompt_tokens"][done].sum()),
    }
