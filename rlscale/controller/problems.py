"""What the controller could not observe, and how much that matters.

A :class:`Problem` names its kind (one word of :data:`rlscale.agents.reasons.ProblemKind`, the
project's one vocabulary of reasons), its :data:`Severity` and what it concerns. Metric sources,
the API reader, the plausibility screen and the outside-write guard report them; the loop
decides from the severities (see :mod:`rlscale.controller.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlscale.agents.reasons import ProblemKind

Severity = Literal["missing", "partial", "stale", "degraded"]
"""``missing``: a pool's data is unusable (keep the current state); ``partial``: some pods
lack metrics (fallback, no scale-down); ``stale``: metrics too old (keep the current state);
``degraded``: a secondary input (routing weights, free GPUs) is unknown."""


@dataclass(frozen=True)
class Problem:
    """Something the controller could not observe, and why.

    Attributes:
        kind: one of :data:`~rlscale.agents.reasons.ProblemKind` (checked by mypy).
        severity: see :data:`Severity`.
        pool / pod: what it concerns (None: cluster-wide or the whole pool).
        message: a human sentence.
    """

    kind: ProblemKind
    severity: Severity
    message: str
    pool: str | None = None
    pod: str | None = None

    def __str__(self) -> str:
        where = "/".join(x for x in (self.pool, self.pod) if x)
        return f"{self.kind}{f'[{where}]' if where else ''}: {self.message}"
