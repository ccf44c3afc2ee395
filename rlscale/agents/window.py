"""The observation window: the recent snapshots a decision looks back on, and what a policy gets.

The environment and the controller keep exactly the same window and ask it for the same
things, so a policy sees in the cluster what it saw in training:

- :meth:`ObservationWindow.append` adds a snapshot and trims the history to the builder's long
  window plus one decision interval (the oldest snapshot that the long-window rates still
  need is kept; never fewer than two);
- :meth:`ObservationWindow.observe` is the observation vector (:class:`~rlscale.metrics.
  observation.ObservationBuilder` over the history);
- :meth:`ObservationWindow.policy_input` is the :class:`~rlscale.agents.policy.PolicyInput`:
  the vector, what happened in each pool since the previous snapshot (interval statistics),
  the newest snapshot and the desired replicas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.policy import PolicyInput
from rlscale.metrics.intervals import PoolInterval
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.snapshot import ClusterSnapshot


class ObservationWindow:
    """The snapshot history of one decision loop (env episode or controller process).

    Args:
        builder: the observation builder (its config's ``long_window_s`` sets what is kept).
        interval_s: seconds between decisions.
    """

    def __init__(self, builder: ObservationBuilder, interval_s: float) -> None:
        self.builder = builder
        self.keep_s = builder.config.long_window_s + interval_s
        """How far back (s) snapshots are kept beyond the newest one."""
        self.history: list[ClusterSnapshot] = []

    def clear(self) -> None:
        """Forget every snapshot (a new episode)."""
        self.history = []

    def append(self, snapshot: ClusterSnapshot) -> None:
        """Add the newest snapshot and drop those older than :attr:`keep_s` needs."""
        self.history.append(snapshot)
        while (len(self.history) > 2
               and self.history[1].time_s <= snapshot.time_s - self.keep_s):
            self.history.pop(0)

    def drop_latest(self) -> None:
        """Remove the newest snapshot (one that could not be used)."""
        self.history.pop()

    @property
    def latest(self) -> ClusterSnapshot:
        """The newest snapshot (``IndexError`` if there is none)."""
        return self.history[-1]

    def observe(self) -> NDArray[np.float32]:
        """The observation vector now (see :class:`~rlscale.metrics.observation.
        ObservationBuilder`)."""
        return self.builder.observe(self.history)

    def intervals(self) -> tuple[PoolInterval, ...]:
        """What happened in each pool between the previous snapshot and the newest."""
        prev = self.history[-2] if len(self.history) > 1 else None
        return self.builder.intervals(prev, self.history[-1])

    def policy_input(self, desired: Sequence[int], *, time_s: float | None = None,
                     vector: NDArray[np.float32] | None = None) -> PolicyInput:
        """What a policy decides on: the observation (``vector``, computed if not given), the
        interval statistics, the newest snapshot and the ``desired`` replicas per pool, at
        ``time_s`` (default: the newest snapshot's time). Raises ``ValueError`` when the
        snapshots cannot be compared (e.g. pods exporting different histogram buckets)."""
        observation = self.observe() if vector is None else vector
        when = self.latest.time_s if time_s is None else time_s
        return PolicyInput(when, observation, self.intervals(), self.latest, tuple(desired))
