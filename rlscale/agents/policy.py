"""The contract between policies and whoever runs them (environment, evaluation, controller).

A policy sees a :class:`PolicyInput` — the observation vector, per-pool interval statistics
derived from vLLM metrics and Deployment status, the latest snapshot, the replicas currently
desired, and the time — and returns a :class:`Decision`. Decisions are a function of the inputs
seen so far and the time (a policy may keep state such as HPA's stabilization window; ``reset``
clears it). Like Knative's autoscaler, a policy with no usable data returns an explicit invalid
decision instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from rlscale.metrics.intervals import PoolInterval
from rlscale.metrics.observation_config import ObservationConfig
from rlscale.metrics.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class Decision:
    """What a policy wants now.

    Attributes:
        replicas: desired replicas per pool, in the context's pool order.
        weights: routing weight per pool (>= 0; normalized over pools with ready replicas).
        valid: False when the policy could not decide (no metrics, bad input); runners keep the
            current state or fall back, and report ``reason``.
        reason: a short CamelCase reason, like HPA's conditions (``ScaleUp``, ``ScaleDown``,
            ``Stable``, ``ScaleDownStabilized``, ``ScaleUpLimit``, ``NoMetrics``, ``Panic``).
        message: a human sentence with the numbers behind the decision.
    """

    replicas: tuple[int, ...]
    weights: tuple[float, ...]
    valid: bool = True
    reason: str = "Stable"
    message: str = ""

    def __post_init__(self) -> None:
        if len(self.replicas) != len(self.weights):
            raise ValueError(f"decision: {len(self.replicas)} replica counts but "
                             f"{len(self.weights)} weights")
        if any(r < 0 for r in self.replicas) or any(not w >= 0 for w in self.weights):
            raise ValueError(f"decision: replicas and weights must be >= 0, got "
                             f"{self.replicas}, {self.weights}")


@dataclass(frozen=True)
class PolicyContext:
    """Static facts a policy is configured with.

    Attributes:
        observation: pools (name, GPU type, max replicas, capacity per replica in req/s, price)
            and SLO, exactly as the observation builder uses them.
        min_replicas: per pool lower limit.
        interval_s: seconds between decisions.
    """

    observation: ObservationConfig
    min_replicas: tuple[int, ...]
    interval_s: float

    @property
    def pool_count(self) -> int:
        """Number of pools."""
        return len(self.observation.pools)

    @property
    def max_replicas(self) -> tuple[int, ...]:
        """Per pool upper limit."""
        return tuple(p.max_replicas for p in self.observation.pools)


def with_replica_limits(observation: ObservationConfig,
                        max_replicas: Sequence[int]) -> ObservationConfig:
    """``observation`` (e.g. a bundle's, as trained) with the replica limits of where it runs
    now (the controller's config, the evaluated scenario): every other pool fact, the
    capacities included, stays the bundle's, so the policy sees what it was trained on."""
    if len(max_replicas) != len(observation.pools):
        raise ValueError(f"{len(max_replicas)} replica limits for "
                         f"{len(observation.pools)} pools")
    return replace(observation, pools=tuple(
        replace(info, max_replicas=int(high))
        for info, high in zip(observation.pools, max_replicas, strict=True)))


@dataclass(frozen=True)
class PolicyInput:
    """Everything observed at decision time.

    Attributes:
        time_s: seconds (simulated time in the simulator, Unix time in the cluster).
        vector: the normalized observation (``ObservationBuilder.observe``).
        pools: per-pool statistics over the last interval (rates, percentiles, replicas).
        snapshot: the latest metrics snapshot.
        desired: replicas each Deployment currently asks for (``spec.replicas``).
    """

    time_s: float
    vector: NDArray[np.float32]
    pools: tuple[PoolInterval, ...]
    snapshot: ClusterSnapshot
    desired: tuple[int, ...]
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """A scaling and routing policy."""

    name: str

    def reset(self) -> None:
        """Forget state from an earlier episode or run."""

    def decide(self, observed: PolicyInput) -> Decision:
        """The decision for ``observed``."""
