"""The environment's action codec: :mod:`rlscale.agents.action_space` for a simulated cluster.

The layout (``MultiDiscrete([2k+1] * P + [L] * P)``, replica changes ``index - k``, weights
``level / (L-1)``, all levels 0: all weights 1) lives in
:class:`~rlscale.agents.action_space.ActionSpec`; this codec adds what the cluster spec knows:
``[min_replicas, max_replicas]`` per pool and the GPU inventory, for the masks and for clamping
what an action (or a decision) asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.action_space import ActionSpec, gpu_limit, level_weights
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
    """Turns ``MultiDiscrete`` actions into replica counts and weights, and builds masks.

    Attributes:
        spec: the action layout (pool names, ``replica_step``, ``weight_levels``).
        nvec: its ``MultiDiscrete`` sizes as an int64 array.
    """

    def __init__(self, cluster: ClusterSpec, replica_step: int, weight_levels: int) -> None:
        self.pools = cluster.pools
        self.count = len(cluster.pools)
        self.spec = ActionSpec(tuple(p.name for p in cluster.pools), replica_step,
                               weight_levels)
        self.step = replica_step
        self.levels = weight_levels
        self.min_replicas = [p.min_replicas for p in cluster.pools]
        self.max_replicas = [p.max_replicas for p in cluster.pools]
        self.gpus_per_replica = [p.gpus_per_replica for p in cluster.pools]
        self.gpu_types = [p.gpu_type for p in cluster.pools]
        self.nvec = np.array(self.spec.nvec, dtype=np.int64)

    def gpu_limit(self, pool: int, desired: Sequence[int], gpu_total: dict[str, int]) -> int:
        """Most replicas ``pool`` may want given the GPUs of its type other pools want."""
        return gpu_limit(pool, desired, self.gpus_per_replica, self.gpu_types, gpu_total)

    def masks(self, desired: Sequence[int], gpu_total: dict[str, int]) -> NDArray[np.bool_]:
        """Flat boolean mask over every choice of every sub-action (MaskablePPO's layout):
        targets within ``[min_replicas, min(max_replicas, GPU limit)]``."""
        upper = [min(self.max_replicas[pool], self.gpu_limit(pool, desired, gpu_total))
                 for pool in range(self.count)]
        return self.spec.masks(desired, self.min_replicas, upper)

    def decode(self, action: NDArray[np.int64] | Sequence[int], desired: Sequence[int],
               gpu_total: dict[str, int]) -> DecodedAction:
        """Apply ``action`` to the current ``desired`` replicas; clamp what limits forbid."""
        values = self.spec.check(action)
        weights = self.spec.weight_values(self.spec.levels(values))
        return self.clamp(self.spec.wanted_replicas(values, desired), weights, desired,
                          gpu_total)

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
        final, all_zero = level_weights(weights)
        return DecodedAction(tuple(replicas), final, clamped, all_zero)

    def encode(self, delta: Sequence[int], levels: Sequence[int]) -> NDArray[np.int64]:
        """The action index for replica changes ``delta`` and weight ``levels`` (for tests and
        scripted agents)."""
        return self.spec.encode(delta, levels)
