"""A pod running one vLLM replica, and its lifecycle as a Kubernetes Deployment would drive it."""

from __future__ import annotations

import enum
import math

from rlscale.sim.engine import ReplicaEngine


class PodPhase(enum.IntEnum):
    """Lifecycle of a replica's pod.

    PENDING: created, waiting for free GPUs of its type (unschedulable, holds no GPU).
    STARTING: bound to GPUs, cold-starting (image pull, weight load, KV profiling, CUDA graphs).
    READY: serving; receives traffic. DRAINING: removed by a scale-down, takes no new requests
    and finishes the ones it has. GONE: deleted or crashed; holds nothing.
    """

    PENDING = 0
    STARTING = 1
    READY = 2
    DRAINING = 3
    GONE = 4


HOLDS_GPUS = (PodPhase.STARTING, PodPhase.READY, PodPhase.DRAINING)


class Pod:
    """One pod of a pool. Times are seconds of simulated time."""

    __slots__ = (
        "created_s",
        "engine",
        "event_version",
        "gpu_since_s",
        "gpus",
        "id",
        "name",
        "phase",
        "pool",
        "ready_at_s",
    )

    def __init__(self, pod_id: int, name: str, pool: int, gpus: int, created_s: float) -> None:
        self.id = pod_id
        self.name = name
        self.pool = pool
        self.gpus = gpus
        self.created_s = created_s
        self.phase = PodPhase.PENDING
        self.ready_at_s = math.inf
        self.gpu_since_s = math.nan
        self.engine: ReplicaEngine | None = None
        self.event_version = 0

    @property
    def holds_gpus(self) -> bool:
        """Whether the pod occupies (and is billed for) its GPUs."""
        return self.phase in HOLDS_GPUS

    def __repr__(self) -> str:
        return f"Pod({self.name}, {self.phase.name})"
