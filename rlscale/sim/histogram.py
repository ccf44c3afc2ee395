"""Prometheus-style histograms with fixed bucket edges, as vLLM exports them."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class Histogram:
    """Counts of observations per bucket (non-cumulative internally), plus sum and count.

    Buckets follow Prometheus' ``le`` semantics: an observation ``v`` falls in the first bucket
    whose upper edge is ``>= v``; the last (implicit) bucket is ``+Inf``.
    """

    __slots__ = ("counts", "edges", "sum")

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = tuple(float(e) for e in edges)
        self.counts = [0] * (len(self.edges) + 1)
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``count`` observations of ``value`` (seconds, for the latency histograms)."""
        self.counts[bisect_left(self.edges, value)] += count
        self.sum += value * count

    @property
    def count(self) -> int:
        """Total number of observations."""
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Cumulative counts per ``le`` edge, ``+Inf`` last (Prometheus' ``_bucket`` series)."""
        out: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            out.append(total)
        return out
