"""Which workload windows train a policy and which judge it: written down, never mixed.

A scenario's ``splits`` section::

    splits:
      train:      {offset_range_s: [0, 2400]}      # traces: episodes start in this range
      validation: [{seed: 9001, offset_s: 450}]    # explicit windows
      test:       [{seed: 9101, offset_s: 0}, {seed: 9102, offset_s: 1200}]

A window is a workload draw (``seed``; generated workloads only) and a start time
(``offset_s``: time of the generator's day, or position in the trace). Generated workloads train
on draws seeded from ``TRAIN_SEED_BASE`` upward and validation/test seeds must lie below it, so
the same realization can never be both; trace windows of validation and test must not overlap
the training range. Both are checked when the scenario is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlscale.configschema import ConfigError, Section
from rlscale.sim.scenario import Scenario

TRAIN_SEED_BASE = 10_000
"""Training draws of generated workloads use seeds >= this; held-out windows use seeds below."""

DEFAULT_SPLITS: dict[str, Any] = {
    "validation": [{"seed": 9001, "offset_s": 450.0}, {"seed": 9002, "offset_s": 2250.0}],
    "test": [{"seed": 9101, "offset_s": 0.0}, {"seed": 9102, "offset_s": 1200.0},
             {"seed": 9103, "offset_s": 2400.0}],
}


@dataclass(frozen=True)
class Window:
    """One evaluation window: a workload draw and where in it the episode starts (seconds)."""

    name: str
    seed: int
    offset_s: float


@dataclass(frozen=True)
class Splits:
    """Training range and held-out windows of a scenario."""

    train_offset_range_s: tuple[float, float] | None
    validation: tuple[Window, ...]
    test: tuple[Window, ...]

    def windows(self, split: str) -> tuple[Window, ...]:
        """The windows of ``validation`` or ``test``."""
        if split == "validation":
            return self.validation
        if split == "test":
            return self.test
        raise ConfigError(f"split must be 'validation' or 'test', got {split!r}")

    def train_windows(self, count: int, day_length_s: float) -> tuple[Window, ...]:
        """``count`` deterministic training windows (for tuning baselines on training data)."""
        low, high = self.train_offset_range_s or (0.0, day_length_s)
        step = (high - low) / max(count, 1)
        return tuple(Window(f"train-{i}", TRAIN_SEED_BASE + i, low + step * (i + 0.5))
                     for i in range(count))


def _windows(section: Section, key: str) -> tuple[Window, ...]:
    windows: list[Window] = []
    for item in section.sections(key):
        seed = item.integer("seed", 0, min_value=0, max_value=TRAIN_SEED_BASE - 1)
        offset = item.number("offset_s", 0.0, min_value=0)
        item.finish()
        windows.append(Window(f"{key}-{len(windows)}", seed, offset))
    if not windows:
        raise ConfigError(f"{section.path}.{key}: at least one window is needed")
    return tuple(windows)


def scenario_splits(scenario: Scenario, episode_s: float) -> Splits:
    """Read and check the scenario's ``splits`` (defaults: ``DEFAULT_SPLITS``)."""
    raw = scenario.sections.get("splits")
    section = Section(raw if raw is not None else DEFAULT_SPLITS, "scenario.splits")
    train = section.section("train")
    train_range: tuple[float, float] | None = None
    if train.has("offset_range_s"):
        value = train.raw("offset_range_s")
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) for v in value) or value[0] >= value[1]):
            raise ConfigError(f"scenario.splits.train.offset_range_s: expected [start_s, end_s] "
                              f"with start < end, got {value!r}")
        train_range = (float(value[0]), float(value[1]))
    train.finish()
    if train_range is None and "trace" in scenario.workload:
        raise ConfigError("scenario.splits.train.offset_range_s: required for a trace workload, "
                          "so that training and held-out windows of the trace stay apart")
    validation = _windows(section, "validation")
    test = _windows(section, "test")
    section.finish()
    if train_range is not None:
        low, high = train_range
        for window in (*validation, *test):
            if window.offset_s < high + episode_s and window.offset_s + episode_s > low:
                raise ConfigError(
                    f"scenario.splits: {window.name} ({window.offset_s:g}-"
                    f"{window.offset_s + episode_s:g} s) overlaps the training range "
                    f"{low:g}-{high + episode_s:g} s (episodes start up to {high:g} s)")
    return Splits(train_range, validation, test)
