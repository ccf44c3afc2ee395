"""The request stream every part of the simulator consumes: arrival times and token counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, eq=False)
class Workload:
    """A finite stream of requests, sorted by arrival time.

    Attributes:
        arrival_s: arrival time of each request in seconds from the start of the stream
            (float64, non-decreasing, first value >= 0).
        prompt_tokens: prompt (context) length of each request in tokens (int64, >= 1).
        output_tokens: number of tokens to generate for each request (int64, >= 1).
        source: a human-readable description of where the stream came from (file, generator).
    """

    arrival_s: NDArray[np.float64]
    prompt_tokens: NDArray[np.int64]
    output_tokens: NDArray[np.int64]
    source: str = "unknown"
    metadata: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError(
                f"workload {self.source!r}: arrival_s, prompt_tokens and output_tokens must have "
                f"equal lengths, got {n}, {len(self.prompt_tokens)}, {len(self.output_tokens)}"
            )
        if n and (np.any(np.diff(self.arrival_s) < 0) or self.arrival_s[0] < 0):
            raise ValueError(f"workload {self.source!r}: arrival_s must be sorted and >= 0")
        if n and (self.prompt_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError(f"workload {self.source!r}: token counts must be >= 1")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Time of the last arrival in seconds (0 for an empty stream)."""
        return float(self.arrival_s[-1]) if len(self.arrival_s) else 0.0

    @property
    def mean_rate_per_s(self) -> float:
        """Mean arrival rate in requests per second over ``duration_s``."""
        return len(self) / self.duration_s if self.duration_s > 0 else 0.0
