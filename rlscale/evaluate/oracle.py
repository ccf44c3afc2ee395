"""The look-ahead heuristic (``lookahead``; formerly "oracle"): it reads the episode's future
arrivals and provisions ahead.

It is a tuned heuristic with perfect foresight of arrivals, not a bound: its tuned point can
miss the SLO target, and cheaper schedules exist. The exact bound is the clairvoyant cost floor
(:mod:`rlscale.evaluate.floor`, policy ``floor``). At time ``t``
it computes, for every future control interval, the request rate that will arrive (averaged
over ``smoothing_s``) and the replicas that rate needs, filling pools in order of price per unit
of capacity (cheapest first, up to each pool's limit). Pool ``i`` then asks for the most replicas
it will need between now and ``t + lead_i + interval``, where ``lead_i`` is the pool's median
cold start: a replica is started early enough to be ready when the load comes (usually), and
kept only while a replacement could not arrive in time — so a replica idles at most one cold
start, which a restart would have billed anyway. It routes by ready capacity. It knows the
arrivals, not the cold-start draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.sim.workload import Workload


class OraclePolicy:
    """Clairvoyant provisioning (needs :meth:`prepare` with the episode's workload)."""

    name = "oracle"
    TUNABLE = "headroom"
    TUNE_GRID: tuple[float, ...] = (-0.15, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5)

    def __init__(self, context: PolicyContext, *, headroom: float = 0.1,
                 smoothing_s: float = 60.0, lead_s: Sequence[float] | None = None) -> None:
        """``headroom``: capacity planned above the arriving rate (fraction; -0.15 plans on the
        full SLO-bound capacity, which keeps 15 % in reserve); ``smoothing_s``:
        the window the future rate is averaged over (seconds); ``lead_s``: per pool cold-start
        lead in seconds (set by :meth:`prepare` from the scenario)."""
        if not headroom > -1.0 or smoothing_s < 0:
            raise ValueError(f"oracle: need headroom > -1 and smoothing_s >= 0, got {headroom}, "
                             f"{smoothing_s}")
        self.context = context
        self.headroom = headroom
        self.smoothing_s = smoothing_s
        self.lead_s = list(lead_s) if lead_s is not None else [300.0] * context.pool_count
        pools = context.observation.pools
        self.order = sorted(range(len(pools)), key=lambda i: (
            pools[i].price_per_replica_hour / max(pools[i].capacity_rps, 1e-9), i))
        self._rate: NDArray[np.float64] = np.zeros(0)
        self._clock_start_s = 0.0

    def prepare(self, workload: Workload, clock_start_s: float,
                lead_s: Sequence[float] | None = None) -> None:
        """Learn the future: the episode's arrivals (episode clock) and when it starts."""
        interval = self.context.interval_s
        bins = max(1, math.ceil(workload.duration_s / interval) + 1)
        counts = np.bincount((workload.arrival_s // interval).astype(np.int64), minlength=bins)
        width = max(1, round(self.smoothing_s / interval))
        # The rate over the ``width`` bins starting at each bin (looking ahead, not behind).
        padded = np.concatenate([[0.0], np.cumsum(counts), np.full(width, float(counts.sum()))])
        ahead = (padded[width:width + len(counts)] - padded[:len(counts)]) / width
        self._rate = ahead / interval
        self._clock_start_s = clock_start_s
        if lead_s is not None:
            self.lead_s = list(lead_s)

    def reset(self) -> None:
        """Nothing carries over between episodes but what :meth:`prepare` gives."""

    def _needed(self, rate_per_s: float) -> list[int]:
        pools = self.context.observation.pools
        needed = [0] * len(pools)
        remaining = rate_per_s * (1.0 + self.headroom)
        for i in self.order:
            if remaining <= 0:
                break
            take = min(pools[i].max_replicas, math.ceil(remaining / pools[i].capacity_rps))
            needed[i] = take
            remaining -= take * pools[i].capacity_rps
        return needed

    def decide(self, observed: PolicyInput) -> Decision:
        """Replicas for the load ahead, weights by ready capacity."""
        if len(self._rate) == 0:
            return Decision(observed.desired, tuple(1.0 for _ in observed.desired), False,
                            "NoForecast", "oracle.prepare() was not called with the workload")
        interval = self.context.interval_s
        now_bin = int((observed.time_s - self._clock_start_s) // interval)
        replicas = []
        for i in range(self.context.pool_count):
            last = now_bin + 1 + math.ceil(self.lead_s[i] / interval)
            horizon = self._rate[max(now_bin, 0):max(last, now_bin + 1)]
            peak = max((self._needed(float(r))[i] for r in horizon), default=0)
            low, high = self.context.min_replicas[i], self.context.max_replicas[i]
            replicas.append(max(low, min(high, peak)))
        pools = self.context.observation.pools
        weights = tuple(max(p.ready_replicas, 0) * info.capacity_rps
                        for p, info in zip(observed.pools, pools, strict=True))
        if not any(weights):
            weights = tuple(float(r) * info.capacity_rps
                            for r, info in zip(replicas, pools, strict=True))
        return Decision(tuple(replicas), weights, True, "Clairvoyant",
                        f"provisioned for the peak rate over each pool's cold-start lead "
                        f"(now {self._rate[min(max(now_bin, 0), len(self._rate) - 1)]:.1f} req/s)")
