"""Evaluation windows on a trace: refuse those the trace cannot fill, lay them out when short.

A trace replay window covers ``[offset_s, offset_s + horizon_s)`` on the trace's clock, where
the horizon is the episode plus its warm-up intervals. A window reaching past the trace's last
arrival would be judged on the few requests (or none) it still holds and report a high
attainment for an idle cluster, so :func:`check_trace_windows` refuses it.

:func:`auto_layout` splits a trace into a training part (the first half: baselines are tuned
there, and a policy may be trained there) and a test part (the second half), and shortens the
episode when one half cannot hold a whole one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rlscale.configschema import ConfigError
from rlscale.envs.splits import Window

MIN_EPISODE_INTERVALS = 10
"""The shortest episode auto_layout accepts (control intervals)."""


def check_trace_windows(windows: Iterable[Window], horizon_s: float, trace_span_s: float,
                        interval_s: float) -> None:
    """Raise ConfigError naming the first window whose horizon ends more than one control
    interval past the trace's last arrival (``trace_span_s``, seconds)."""
    for window in windows:
        end = window.offset_s + horizon_s
        if end > trace_span_s + interval_s:
            raise ConfigError(
                f"window {window.name} ({window.offset_s:g}-{end:g} s incl. warm-up) reaches "
                f"past the end of the trace ({trace_span_s:.0f} s): it would be judged on "
                f"{'no' if window.offset_s >= trace_span_s else 'too few'} requests. Move it, "
                f"shorten episode.duration_s, or let `--trace` lay windows out")


@dataclass(frozen=True)
class Layout:
    """Windows laid out on a trace.

    Attributes:
        episode_s: episode length (seconds, whole control intervals).
        train_range_s: where training episodes (and tuning windows) may start (seconds).
        test: held-out windows in the second half; validation: the first of them.
        note: one sentence saying how the trace was split (printed with the results).
    """

    episode_s: float
    train_range_s: tuple[float, float]
    test: tuple[Window, ...]
    note: str

    def splits_section(self) -> dict[str, object]:
        """The scenario's ``splits`` mapping for this layout."""
        def entries(windows: tuple[Window, ...]) -> list[dict[str, float]]:
            return [{"seed": 0, "offset_s": w.offset_s} for w in windows]

        return {"train": {"offset_range_s": list(self.train_range_s)},
                "validation": entries(self.test[:1]), "test": entries(self.test)}


def auto_layout(trace_span_s: float, episode_s: float, interval_s: float, warmup_steps: int,
                max_test_windows: int = 3) -> Layout:
    """Train on the first half of a trace, test on the second half.

    The episode is shortened to whole control intervals when half the trace cannot hold it
    (with its warm-up); the second half holds up to ``max_test_windows`` back-to-back test
    windows. Raises ConfigError when a half cannot hold ``MIN_EPISODE_INTERVALS`` intervals.
    """
    warmup_s = warmup_steps * interval_s
    half = trace_span_s / 2.0
    fit = math.floor((half - warmup_s) / interval_s) * interval_s
    if fit < MIN_EPISODE_INTERVALS * interval_s:
        raise ConfigError(
            f"the trace spans {trace_span_s:.0f} s: half of it cannot hold an episode of "
            f"{MIN_EPISODE_INTERVALS} control intervals of {interval_s:g} s plus warm-up; "
            f"use a longer trace or --time-scale below 1")
    length = min(episode_s, fit)
    horizon = length + warmup_s
    count = max(1, min(max_test_windows, math.floor(half / horizon)))
    test = tuple(Window(f"test-{i}", 0, half + i * horizon) for i in range(count))
    train_end = max(half - horizon, 1.0)
    shortened = (f"; episodes shortened from {episode_s:g} s to {length:g} s to fit"
                 if length < episode_s else "")
    note = (f"trace of {trace_span_s:.0f} s split in halves: tuning/training episodes start in "
            f"0-{train_end:.0f} s, {count} test window(s) of {length:g} s (+{warmup_s:g} s "
            f"warm-up) from {half:.0f} s{shortened}")
    return Layout(length, (0.0, train_end), test, note)
