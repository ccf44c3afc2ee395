"""``static``: fixed provisioning, the baseline of the seed paper's comparison.

Every pool keeps a fixed replica count and traffic is split in proportion to each pool's
configured capacity (``replicas × capacity_rps``), whatever the load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rlscale.agents.baselines._common import Baseline, as_count, check_pools, clamp
from rlscale.agents.policy import Decision, PolicyContext, PolicyInput


class StaticPolicy(Baseline):
    """Fixed replicas per pool, weights proportional to configured capacity.

    Knobs:
        replicas: replicas for every pool (an int) or one per pool (a sequence); each is clamped
            to the pool's ``[min_replicas, max_replicas]``. Default: each pool's max_replicas.
    """

    name = "static"
    TUNABLE: ClassVar[str] = "replicas"
    TUNE_GRID: ClassVar[tuple[float, ...]] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16)

    def __init__(self, context: PolicyContext, *,
                 replicas: float | Sequence[float] | None = None) -> None:
        self.context = context
        limits = zip(context.min_replicas, context.max_replicas, strict=True)
        if replicas is None:
            wanted = list(context.max_replicas)
        elif isinstance(replicas, (int, float)):
            wanted = [as_count("static: replicas", replicas)] * context.pool_count
        else:
            wanted = [as_count("static: replicas", r) for r in replicas]
            if len(wanted) != context.pool_count:
                raise ValueError(f"static: replicas: expected one count per pool "
                                 f"({context.pool_count}), got {len(wanted)}")
        if any(r < 0 for r in wanted):
            raise ValueError(f"static: replicas must be >= 0, got {wanted}")
        self.requested = tuple(wanted)
        self.replicas = tuple(clamp(r, low, high) for r, (low, high) in zip(
            wanted, limits, strict=True))
        self.weights = tuple(r * p.capacity_rps for r, p in zip(
            self.replicas, context.observation.pools, strict=True))

    def reset(self) -> None:
        """Nothing to forget."""

    def decide(self, observed: PolicyInput) -> Decision:
        """The fixed replicas and weights."""
        check_pools(self.name, self.context, observed)
        reason = "Stable" if tuple(observed.desired) == self.replicas else (
            "ScaleUp" if sum(self.replicas) > sum(observed.desired) else "ScaleDown")
        capacity = sum(self.weights)
        message = (f"fixed replicas {list(self.replicas)} (asked {list(self.requested)}), "
                   f"{capacity:.1f} req/s of capacity; current {list(observed.desired)}")
        return Decision(self.replicas, self.weights, True, reason, message)
