"""Is the SLO being missed right now? A guard that lifts a policy's decision to its fallback's.

A learned policy can meet traffic that looks familiar, entry by entry and as a whole (the
familiarity gate lets it through), and still under-provision it: a GPU type short of half its
inventory, bursts longer than any in training. The guard watches the outcome instead of the
input: the share of the last interval's requests that met the SLO, estimated from the pools'
latency histograms (a request misses when its TTFT or its inter-token gaps exceed the SLO; per
pool the larger of the two violation fractions, weighted by the requests the pool observed).

While that share is below ``enter``, every pool gets at least the replicas the fallback
heuristic (the SLO planner by default) asks for, and the fallback's routing weights; the policy
may still ask for more. The guard turns off again only after ``hold`` intervals in a row at or
above the threshold, so control does not flap at the edge of a burst. The fallback is asked
every decision (not only while guarding), so that its own state (rate estimates, trends) is
current when the guard turns on.

The default (on below 90 %, off after 4 intervals that meet it) guards a learned policy in
evaluation and in the controller alike (a heuristic primary policy runs unguarded, as it is
evaluated). Measured with the shipped hetero-3pool policy on the generalization suite (one
window per family): under the suite's GPU shortage SLO attainment rose from 87.8 % to 99.2 %
for +4.5 % cost (the policy had left the two short pools overloaded and routed 5-12 % of the
traffic to 15 ready L4 replicas); the other five families moved by at most 0.9 points and
1.5 % cost. At 95 % the guard also fired in a slow ramp and lost 5.8 points there: switching
to the planner's weights mid-ramp cost more than it saved. Taking the fallback's replicas
outright (not each pool's larger count) collapsed the long-prompt family to 30.7 %. The
threshold was chosen between 0.9 and 0.95 on that suite, so for this knob it is not held out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from rlscale.metrics.intervals import PoolInterval

DEFAULT_ENTER: Final = 0.9
"""The default threshold: an interval's SLO attainment (fraction of requests)."""


@dataclass(frozen=True)
class SloGuardConfig:
    """The guard's settings.

    Attributes:
        enter: SLO attainment of the last interval (a fraction of requests) below which the
            guard turns on (None: the guard is off).
        hold: intervals in a row at or above ``enter`` before it turns off again (>= 1).
    """

    enter: float | None = DEFAULT_ENTER
    hold: int = 4

    def __post_init__(self) -> None:
        if self.enter is not None and not 0 < self.enter <= 1:
            raise ValueError(f"SLO guard: enter must be an attainment in (0, 1], got "
                             f"{self.enter}")
        if self.hold < 1:
            raise ValueError(f"SLO guard: hold must be >= 1 interval, got {self.hold}")


def interval_attainment(pools: Sequence[PoolInterval]) -> float | None:
    """The share of the interval's requests (over all pools) that met the SLO, or None when no
    pool observed a request. NaN violation fractions (no observations) count as none."""
    observed = sum(max(p.observed_requests, 0) for p in pools)
    if observed <= 0:
        return None
    missed = sum(max(p.observed_requests, 0) * max(_fraction(p.ttft_slo_violation),
                                                    _fraction(p.itl_slo_violation))
                 for p in pools)
    return 1.0 - missed / observed


def _fraction(value: float) -> float:
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else 0.0


GUARD_OFF = SloGuardConfig(enter=None)
"""The guard switched off."""


class SloGuard:
    """The guard's state over one decision loop (env episode, controller)."""

    def __init__(self, config: SloGuardConfig) -> None:
        self.config = config
        self.active = False
        self.met_in_a_row = 0
        self.last_attainment: float | None = None

    def reset(self) -> None:
        """Forget the previous episode."""
        self.active = False
        self.met_in_a_row = 0
        self.last_attainment = None

    def update(self, pools: Sequence[PoolInterval]) -> bool:
        """Take one decision's interval statistics; True while the guard is on. An interval
        without requests changes nothing."""
        enter = self.config.enter
        attainment = interval_attainment(pools)
        self.last_attainment = attainment
        if enter is None or attainment is None:
            return self.active
        if attainment < enter:
            self.active = True
            self.met_in_a_row = 0
        elif self.active:
            self.met_in_a_row += 1
            if self.met_in_a_row >= self.config.hold:
                self.active = False
                self.met_in_a_row = 0
        return self.active
