"""Progress of long jobs (evaluation, tuning, imitation, training): a bar on a terminal, and
timestamped lines on a log (redirected stderr, a Kubernetes Job's log) where a bar shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class ProgressLog:
    """Writes ``[2026-11-29T14:50:03Z] tuning: 12/120 (10 %), 41 s elapsed, about 6 min left``
    to ``stream`` at the start, each time another ``every`` fraction of ``total`` is done, and at
    the end.

    ``now`` gives seconds since the epoch (a fake clock in tests); ``stream`` defaults to
    stderr, read when a line is written.
    """

    def __init__(self, description: str, total: int, *, every: float = 0.1,
                 stream: TextIO | None = None, now: Callable[[], float] = time.time) -> None:
        if total < 0 or not 0 < every <= 1:
            raise ValueError(f"progress: need total >= 0 and 0 < every <= 1, got {total}, {every}")
        self.description, self.total, self.every = description, total, every
        self._stream, self._now = stream, now
        self._started = now()
        self._done = 0
        self._reported = -1
        self._write(0)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more units of work done."""
        self.update(self._done + steps)

    def update(self, done: int) -> None:
        """Set the units of work done so far; writes a line when a new step of ``every`` (or
        the end) is reached."""
        self._done = min(done, self.total)
        bucket = int(self._done / self.total / self.every + 1e-9) if self.total else 0
        if bucket > self._reported:
            self._write(bucket)

    def _write(self, bucket: int) -> None:
        self._reported = bucket
        now = self._now()
        elapsed = now - self._started
        share = self._done / self.total if self.total else 1.0
        left = ""
        if 0 < share < 1:
            left = f", about {_duration(elapsed * (1 - share) / share)} left"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        stream = self._stream or sys.stderr
        print(f"[{stamp}] {self.description}: {self._done}/{self.total} ({share:.0%}), "
              f"{_duration(elapsed)} elapsed{left}", file=stream, flush=True)


def _duration(seconds: float) -> str:
    """``41 s``, ``6.5 min`` or ``1.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressBar:
    """Progress as a context manager yielding ``advance()``: a rich bar when stderr is a
    terminal, else :class:`ProgressLog` lines on stderr; nothing when not ``enabled``."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.enabled, self.description, self.total = enabled, description, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        if not sys.stderr.isatty():
            return ProgressLog(self.description, self.total).advance
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn())
        self._bar.__enter__()
        task_id = self._bar.add_task(self.description, total=self.total)
        return lambda: self._bar.advance(task_id)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
