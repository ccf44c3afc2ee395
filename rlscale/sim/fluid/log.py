"""The fast engine's request log: the same columns as :class:`~rlscale.sim.stats.RequestLog`,
appended a step's worth of rows at a time as numpy arrays."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np
from numpy.typing import NDArray

FLOAT_COLUMNS = ("arrival_s", "ttft_s", "itl_s", "e2e_s", "queue_s", "end_s")
INT_COLUMNS = ("id", "pool", "prompt_tokens", "output_tokens", "preemptions", "failure")


class _Column:
    """One column across the log's chunks; ``column[start:]`` is a numpy array."""

    __slots__ = ("_log", "_name")

    def __init__(self, log: ArrayLog, name: str) -> None:
        self._log, self._name = log, name

    def __getitem__(self, index: slice) -> NDArray[Any]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ArrayLog columns support plain slices only ([start:stop])")
        return self._log.rows_from(self._name, index)


class ArrayLog:
    """One row per request that ended (finished or failed); columns as in ``RequestLog``.

    ``columns[name][start:]`` and ``int_columns[name][start:]`` give numpy arrays (as the lists of
    ``RequestLog`` give lists) touching only the chunks they need: a step's rows cost a step's
    work however long the episode.
    """

    def __init__(self) -> None:
        self._chunks: list[dict[str, NDArray[Any]]] = []
        self._starts: list[int] = []
        self._rows = 0
        self.columns = {name: _Column(self, name) for name in FLOAT_COLUMNS}
        self.int_columns = {name: _Column(self, name) for name in INT_COLUMNS}

    def __len__(self) -> int:
        return self._rows

    def append(self, rows: dict[str, NDArray[Any]]) -> None:
        """Add rows: one array per column of ``FLOAT_COLUMNS`` and ``INT_COLUMNS``, equal
        lengths (times in seconds, tokens as counts, ``failure`` a ``FAIL_*`` code or 0)."""
        missing = [c for c in (*FLOAT_COLUMNS, *INT_COLUMNS) if c not in rows]
        if missing:
            raise ValueError(f"ArrayLog.append: missing column(s) {missing}")
        count = len(rows["id"])
        if count == 0:
            return
        self._chunks.append(rows)
        self._starts.append(self._rows)
        self._rows += count

    def rows_from(self, name: str, index: slice) -> NDArray[Any]:
        """Rows ``index`` (a plain slice) of column ``name``."""
        start, stop, _ = index.indices(self._rows)
        dtype = np.int64 if name in INT_COLUMNS else np.float64
        if start >= stop:
            return np.zeros(0, dtype)
        first = bisect_right(self._starts, start) - 1
        parts = []
        for chunk, offset in zip(self._chunks[first:], self._starts[first:], strict=True):
            if offset >= stop:
                break
            parts.append(chunk[name][max(0, start - offset):stop - offset])
        return np.concatenate(parts).astype(dtype, copy=False) if len(parts) > 1 else (
            parts[0].astype(dtype, copy=False))

    def arrays(self) -> dict[str, NDArray[Any]]:
        """All rows as numpy arrays, one per column (float64 times, int64 counts)."""
        everything = slice(0, self._rows)
        joined = {name: self.rows_from(name, everything) for name in (*FLOAT_COLUMNS, *INT_COLUMNS)}
        if len(self._chunks) > 1:
            self._chunks, self._starts = [joined], [0]
        return joined
