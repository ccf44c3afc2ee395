"""Where each episode's requests come from: a held-out window, a training draw of the
scenario's own workload, or a draw from a workload mixture.

:class:`EpisodeWorkloads` is built once per environment from its constructor's choices and asked
for one :class:`EpisodeWorkload` per reset (with the environment's random generator, so draws are
reproducible from the reset's seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlscale.envs.config import EnvConfig
from rlscale.envs.splits import TRAIN_SEED_BASE, Splits, Window
from rlscale.sim.scenario import Scenario
from rlscale.sim.spec import ClusterSpec
from rlscale.sim.workload import Workload
from rlscale.sim.workload import window as window_of
from rlscale.sim.workload.mixture import WorkloadMixture


@dataclass(frozen=True)
class EpisodeWorkload:
    """One episode's requests.

    Attributes:
        workload: the requests, on a clock starting at 0 (seconds).
        offset_s: the time of day (seconds) that clock starts at.
        family: the mixture family drawn (empty when not drawn from a mixture).
        cluster: the cluster the episode runs, when the mixture changed the scenario's (a GPU
            shortage), else None.
    """

    workload: Workload
    offset_s: float
    family: str = ""
    cluster: ClusterSpec | None = None


class EpisodeWorkloads:
    """Draws each episode's workload (see the module docstring).

    Args:
        scenario / config / splits: the environment's.
        window: a held-out window to replay (evaluation), or None.
        fixed_workload: a workload every episode replays (windows of it), or None.
        fixed_offset_s: where in the workload episodes start (seconds), or None: drawn.
        mixture: the workload mixture training episodes draw from, or None.
    """

    def __init__(self, scenario: Scenario, config: EnvConfig, splits: Splits, *,
                 window: Window | None, fixed_workload: Workload | None,
                 fixed_offset_s: float | None, mixture: WorkloadMixture | None) -> None:
        self.scenario = scenario
        self.config = config
        self.splits = splits
        self.window = window
        self.fixed_workload = fixed_workload
        self.fixed_offset_s = fixed_offset_s
        self.mixture = mixture
        self._trace: Workload | None = None

    @property
    def from_mixture(self) -> bool:
        """Whether episodes draw from the mixture (training without a window or workload)."""
        return self.mixture is not None and self.window is None and self.fixed_workload is None

    def draw(self, horizon_s: float, rng: np.random.Generator) -> EpisodeWorkload:
        """This episode's ``horizon_s`` seconds of requests."""
        return (self._from_mixture(horizon_s, rng) if self.from_mixture
                else self._from_scenario(horizon_s, rng))

    def _from_scenario(self, horizon_s: float, rng: np.random.Generator) -> EpisodeWorkload:
        """With a ``window`` (evaluation), its workload seed and offset. Otherwise (training):
        generated workloads are drawn with a seed from the training range
        (``splits.TRAIN_SEED_BASE`` and up) and start at a random time of their day; traces
        start at a random point of the scenario's training range that leaves a whole episode,
        with the time of day taken from the trace's own timestamps."""
        episode = self.config.episode
        day = self.config.control.day_length_s
        window = self.window
        fixed = self.fixed_offset_s if window is None else window.offset_s
        if self.fixed_workload is None and "generator" in self.scenario.workload:
            seed = (window.seed if window is not None
                    else TRAIN_SEED_BASE + int(rng.integers(2**31)))
            offset = fixed if fixed is not None else (
                float(rng.uniform(0.0, day)) if episode.random_offset else 0.0)
            # Only the window's requests are needed (the earlier ones are drawn, not made).
            base = self.scenario.build_workload(np.random.default_rng(seed),
                                                {"duration_s": offset + horizon_s},
                                                skip_before_s=offset)
            clock_start = 0.0
        else:
            if self.fixed_workload is not None:
                base = self.fixed_workload
            else:
                if self._trace is None:
                    self._trace = self.scenario.build_workload(np.random.default_rng(0))
                base = self._trace
            latest = max(0.0, base.duration_s - horizon_s)
            low, high = self.splits.train_offset_range_s or (0.0, latest)
            high = min(high, latest)
            offset = fixed if fixed is not None else (
                float(rng.uniform(min(low, high), high)) if episode.random_offset else low)
            start = base.metadata.get("start_s", 0.0)
            clock_start = float(start) if isinstance(start, (int, float)) else 0.0
        return EpisodeWorkload(window_of(base, offset, horizon_s), clock_start + offset)

    def _from_mixture(self, horizon_s: float, rng: np.random.Generator) -> EpisodeWorkload:
        """A draw from the mixture; the clock starts at a uniform time of day, since the
        families draw their own periods and phases: the time-of-day entries then cover their
        whole range in training (the familiarity gate judges them too) and say nothing the
        policy could tie to the load."""
        assert self.mixture is not None
        drawn = self.mixture.draw(rng, horizon_s, self.scenario.cluster,
                                  self.scenario.slo.itl_s, base_dir=self.scenario.base_dir)
        return EpisodeWorkload(drawn.workload,
                               float(rng.uniform(0.0, self.config.control.day_length_s)),
                               drawn.family,
                               None if drawn.cluster is self.scenario.cluster else drawn.cluster)
