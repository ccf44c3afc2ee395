"""The joint action's layout, declared once: a replica change and a routing-weight level per pool.

Encoded as ``MultiDiscrete([2k+1] * P + [L] * P)`` (``nvec``): entries ``0..P-1`` are replica
changes ``index - k`` (``k = replica_step``), so pool ``i`` asks for ``desired[i] + index - k``
replicas; entries ``P..2P-1`` are routing-weight levels ``0..L-1`` (``L = weight_levels``), weight
``level / (L-1)``; when every level is 0, every pool gets weight 1. A flat action mask (the layout
of sb3-contrib's ``MaskablePPO``) holds ``2k+1`` replica choices per pool, then ``L`` levels per
pool: a change is allowed if its target stays in ``[min_replicas, upper]`` (``upper`` is
``max_replicas``, or less where the GPU inventory is short); scaling down from above ``upper``
and keeping the current count are always allowed.

The environment's codec (training), the bundle's numpy runtime (serving), imitation's expert
labels and the bundle format all use this module, so a mismatch between training and serving
cannot arise silently. Imports numpy and the standard library only (the in-cluster controller
runs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class ActionSpec:
    """The ``MultiDiscrete`` action layout for named pools.

    Attributes:
        pools: pool names in action (and observation) order.
        replica_step: ``k``: entry ``i < P`` changes pool ``i``'s replicas by ``index - k``.
        weight_levels: ``L``: entry ``P + i`` sets pool ``i``'s weight to ``level / (L-1)``.

    Raises:
        ValueError: no pools, duplicate names, ``replica_step < 0`` or ``weight_levels < 2``.
    """

    pools: tuple[str, ...]
    replica_step: int
    weight_levels: int

    def __post_init__(self) -> None:
        if not self.pools or len(set(self.pools)) != len(self.pools):
            raise ValueError(f"action: pools must be unique names, at least one, got "
                             f"{list(self.pools)}")
        if self.replica_step < 0 or self.weight_levels < 2:
            raise ValueError(f"action: need replica_step >= 0 and weight_levels >= 2, got "
                             f"{self.replica_step} and {self.weight_levels}")

    @classmethod
    def unnamed(cls, count: int, replica_step: int, weight_levels: int) -> ActionSpec:
        """The layout for ``count`` pools named by their index (``"0"``, ``"1"``, …), for code
        that knows the layout but not the pool names."""
        return cls(tuple(str(i) for i in range(count)), replica_step, weight_levels)

    @property
    def count(self) -> int:
        """Number of pools ``P``."""
        return len(self.pools)

    @property
    def replica_choices(self) -> int:
        """Choices of one replica sub-action: ``2k+1``."""
        return 2 * self.replica_step + 1

    @property
    def nvec(self) -> tuple[int, ...]:
        """Choices per sub-action: ``[2k+1] * P + [L] * P``."""
        return (self.replica_choices,) * self.count + (self.weight_levels,) * self.count

    # ------------------------------------------------------------------ encoding
    def encode(self, deltas: Sequence[int], levels: Sequence[int]) -> NDArray[np.int64]:
        """The action for replica changes ``deltas`` and weight ``levels`` (one per pool)."""
        return np.array([d + self.replica_step for d in deltas] + list(levels), dtype=np.int64)

    def check(self, action: ArrayLike) -> NDArray[np.int64]:
        """``action`` as a flat int64 array; ValueError if it is outside the ``MultiDiscrete``."""
        values = np.asarray(action, dtype=np.int64).reshape(-1)
        nvec = np.array(self.nvec, dtype=np.int64)
        if values.shape != nvec.shape or np.any(values < 0) or np.any(values >= nvec):
            raise ValueError(f"action {values.tolist()} is outside MultiDiscrete"
                             f"({nvec.tolist()})")
        return values

    def deltas(self, action: Sequence[int] | NDArray[np.int64]) -> list[int]:
        """The replica change of every pool: ``index - k``."""
        return [int(a) - self.replica_step for a in action[:self.count]]

    def levels(self, action: Sequence[int] | NDArray[np.int64]) -> list[int]:
        """The weight level of every pool."""
        return [int(a) for a in action[self.count:]]

    def wanted_replicas(self, action: Sequence[int] | NDArray[np.int64],
                        desired: Sequence[int]) -> list[int]:
        """Replicas the action asks for: ``desired + index - k`` per pool (not clamped)."""
        return [d + delta for d, delta in zip(desired, self.deltas(action), strict=True)]

    def weight_values(self, levels: Sequence[int]) -> list[float]:
        """Routing weights ``level / (L-1)`` of ``levels`` (all 0 stays all 0 here; see
        :func:`level_weights`)."""
        return [float(level) / (self.weight_levels - 1) for level in levels]

    def weights(self, levels: Sequence[int]) -> tuple[tuple[float, ...], bool]:
        """The routing weights of ``levels`` (every level 0: every weight 1), and whether
        every level was 0."""
        return level_weights(self.weight_values(levels))

    def levels_of(self, weights: Sequence[float]) -> NDArray[np.int64]:
        """The weight levels closest to ``weights`` (>= 0) scaled so the largest is the top
        level; all top levels if every weight is 0."""
        values = np.asarray(weights, dtype=np.float64)
        top = float(values.max()) if len(values) else 0.0
        if top > 0:
            return np.rint(values / top * (self.weight_levels - 1)).astype(np.int64)
        return np.full(len(values), self.weight_levels - 1, dtype=np.int64)

    def nearest(self, replicas: Sequence[int], weights: Sequence[float],
                desired: Sequence[int], mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        """The action closest to ``replicas`` and ``weights`` that ``mask`` allows: replica
        changes clipped to ``±k`` and moved to the nearest allowed choice, weights rounded to
        the levels (:meth:`levels_of`)."""
        step, width = self.replica_step, self.replica_choices
        action = np.zeros(2 * len(desired), dtype=np.int64)
        for i in range(len(desired)):
            delta = int(np.clip(replicas[i] - desired[i], -step, step))
            allowed = np.flatnonzero(mask[i * width:(i + 1) * width])
            wanted = delta + step
            action[i] = allowed[np.argmin(np.abs(allowed - wanted))] if len(allowed) else step
        action[len(desired):] = self.levels_of(weights)
        return action

    # ------------------------------------------------------------------ masks
    def replica_mask(self, current: int, low: int, upper: int) -> NDArray[np.bool_]:
        """Allowed changes (``2k+1``) of one pool at ``current`` replicas within ``[low,
        upper]``: scaling down from above ``upper`` and keeping ``current`` stay allowed."""
        deltas = np.arange(-self.replica_step, self.replica_step + 1)
        target = current + deltas
        ok: NDArray[np.bool_] = (target >= low) & (target <= max(upper, current))
        ok &= (deltas <= 0) | (target <= upper)
        ok[self.replica_step] = True
        return ok

    def masks(self, desired: Sequence[int], min_replicas: Sequence[int],
              upper: Sequence[int]) -> NDArray[np.bool_]:
        """The flat mask over every choice of every sub-action (MaskablePPO's layout) for the
        currently ``desired`` replicas, each pool within ``[min_replicas, upper]``; every
        weight level is allowed."""
        parts = [self.replica_mask(current, low, high)
                 for current, low, high in zip(desired, min_replicas, upper, strict=True)]
        parts.extend(np.ones(self.weight_levels, dtype=np.bool_) for _ in range(self.count))
        return np.concatenate(parts)


def level_weights(weights: Sequence[float]) -> tuple[tuple[float, ...], bool]:
    """``weights`` as floats, or all 1 if none is positive; and whether none was."""
    all_zero = not any(w > 0 for w in weights)
    return (tuple(1.0 for _ in weights) if all_zero else tuple(float(w) for w in weights),
            all_zero)


def gpu_limit(pool: int, desired: Sequence[int], gpus_per_replica: Sequence[int],
              gpu_types: Sequence[str], gpu_total: dict[str, int]) -> int:
    """Most replicas ``pool`` may want given the GPUs of its type the other pools want."""
    gpu_type = gpu_types[pool]
    others = sum(desired[j] * gpus_per_replica[j] for j in range(len(desired))
                 if j != pool and gpu_types[j] == gpu_type)
    return max(0, (gpu_total[gpu_type] - others) // gpus_per_replica[pool])
