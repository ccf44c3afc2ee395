"""The joint action: a replica change and a routing-weight level for every pool.

Encoded as ``MultiDiscrete([2k+1] * P + [L] * P)``: entries ``0..P-1`` are replica changes
``index - k`` (``k = replica_step``), entries ``P..2P-1`` routing-weight levels ``0..L-1``
(weight ``level / (L-1)``; the router normalizes over pools with ready replicas). Action masks
forbid changes that leave ``[min_replicas, max_replicas]`` or need GPUs the cluster lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.spec import ClusterSpec


@dataclass(frozen=True)
class DecodedAction:
    """What an action asks the cluster to do.

    Attributes:
        replicas: desired replicas per pool after clamping.
        weights: routing weight per pool in [0, 1].
        clamped: the action asked for something the limits forbid (it was clamped).
        all_weights_zero: every weight level was 0; all pools got weight 1 instead.
    """

    replicas: tuple[int, ...]
    weights: tuple[float, ...]
    clamped: bool
    all_weights_zero: bool


class ActionCodec:
    """Turns ``MultiDiscrete`` actions into replica counts and weights, and builds masks."""

    def __init__(self, cluster: ClusterSpec, replica_step: int, weight_levels: int) -> None:
        self.pools = cluster.pools
        self.count = len(cluster.pools)
        self.step = replica_step
        self.levels = weight_levels
        self.min_replicas = [p.min_replicas for p in cluster.pools]
        self.max_replicas = [p.max_replicas for p in cluster.pools]
        self.gpus_per_replica = [p.gpus_per_replica for p in cluster.pools]
        self.gpu_types = [p.gpu_type for p in cluster.pools]
        self.nvec = np.array([2 * replica_step + 1] * self.count + [weight_levels] * self.count,
                             dtype=np.int64)

    def gpu_limit(self, pool: int, desired: Sequence[int], gpu_total: dict[str, int]) -> int:
        """Most replicas ``pool`` may want given the GPUs of its type other pools want."""
        gpu_type = self.gpu_types[pool]
        others = sum(desired[j] * self.gpus_per_replica[j] for j in range(self.count)
                     if j != pool and self.gpu_types[j] == gpu_type)
        return max(0, (gpu_total[gpu_type] - others) // self.gpus_per_replica[pool])

    def masks(self, desired: Sequence[int], gpu_total: dict[str, int]) -> NDArray[np.bool_]:
        """Flat boolean mask over every choice of every sub-action (MaskablePPO's layout)."""
        parts: list[NDArray[np.bool_]] = []
        deltas = np.arange(-self.step, self.step + 1)
        for pool in range(self.count):
            target = desired[pool] + deltas
            upper = min(self.max_replicas[pool], self.gpu_limit(pool, desired, gpu_total))
            ok = (target >= self.min_replicas[pool]) & (target <= max(upper, desired[pool]))
            ok &= (deltas <= 0) | (target <= upper)
            ok[self.step] = True  # keeping the current count is always allowed
            parts.append(ok)
        parts.extend(np.ones(self.levels, dtype=np.bool_) for _ in range(self.count))
        return np.concatenate(parts)

    def decode(self, action: NDArray[np.int64] | Sequence[int], desired: Sequence[int],
               gpu_total: dict[str, int]) -> DecodedAction:
        """Apply ``action`` to the current ``desired`` replicas; clamp what limits forbid."""
        values = np.asarray(action, dtype=np.int64).reshape(-1)
        if values.shape != self.nvec.shape or np.any(values < 0) or np.any(values >= self.nvec):
            raise ValueError(f"action {values.tolist()} is outside MultiDiscrete"
                             f"({self.nvec.tolist()})")
        levels = values[self.count:]
        wanted = [d + int(v) - self.step for d, v in zip(desired, values[:self.count], strict=True)]
        weights = [float(level) / (self.levels - 1) for level in levels]
        return self.clamp(wanted, weights, desired, gpu_total)

    def clamp(self, wanted: Sequence[int], weights: Sequence[float], desired: Sequence[int],
              gpu_total: dict[str, int]) -> DecodedAction:
        """Replica counts within ``[min, max]`` and the GPU inventory (growth only up to what
        the GPUs of the pool's type allow, pools in order), and the weights; if every weight is
        0, every pool gets weight 1."""
        if len(wanted) != self.count or len(weights) != self.count:
            raise ValueError(f"expected {self.count} replica counts and weights, got "
                             f"{len(wanted)} and {len(weights)}")
        replicas = list(desired)
        clamped = False
        for pool in range(self.count):
            upper = min(self.max_replicas[pool], self.gpu_limit(pool, replicas, gpu_total))
            target = int(wanted[pool])
            if target > desired[pool]:
                target = min(target, max(upper, desired[pool]))
            low = self.min_replicas[pool]
            target = max(low, min(target, max(self.max_replicas[pool], low)))
            clamped |= target != wanted[pool]
            replicas[pool] = target
        all_zero = not any(w > 0 for w in weights)
        final = tuple(1.0 for _ in weights) if all_zero else tuple(float(w) for w in weights)
        return DecodedAction(tuple(replicas), final, clamped, all_zero)

    def encode(self, delta: Sequence[int], levels: Sequence[int]) -> NDArray[np.int64]:
        """The action index for replica changes ``delta`` and weight ``levels`` (for tests and
        scripted agents)."""
        return np.array([d + self.step for d in delta] + list(levels), dtype=np.int64)
