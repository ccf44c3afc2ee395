"""The controller's clocks: durations on a monotonic clock, wall time only for timestamps.

A wall clock can be stepped (NTP correction, an operator, a VM restored from a snapshot);
dividing a counter's growth by a wall-clock interval that jumped reads a rate many times too
high or negative, and a schedule or readiness judged on it stalls or fires at once. So the
controller's timeline is :class:`SteadyClock`: Unix seconds as they were when the controller
started, advanced only by :func:`time.monotonic`. It keeps the time of day close to the wall's
(the policy's time-of-day features) while a step of the wall clock in either direction changes
no interval, no rate and no schedule. The Lease's ``renewTime`` and Events carry real wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """Unix seconds anchored once at construction, then advanced by a monotonic clock.

    Args:
        wall: Unix seconds (read once); monotonic: a clock that never steps (seconds).
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._offset = wall() - monotonic()

    def __call__(self) -> float:
        """Now on the steady timeline (seconds, Unix epoch as of start)."""
        return self._offset + self.monotonic()
