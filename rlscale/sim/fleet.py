"""The pods of every pool as a Deployment controller and the scheduler keep them, and the
workload's progress: the part of a simulated cluster that both engines share
(:class:`rlscale.sim.cluster.Cluster`, request by request, and
:class:`rlscale.sim.fluid.FluidCluster`, pools as fluids).

Pods are PENDING while no GPU of their type is free (first come, first bound), STARTING for a
cold start drawn from the pool's distribution, then READY; a scale-down removes pods in
Kubernetes' ReplicaSet order. GPU time is billed from binding to termination.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sized

import numpy as np

from rlscale.sim.pod import Pod, PodPhase
from rlscale.sim.spec import ClusterSpec, PoolSpec


class PodFleet(ABC):
    """Pods, GPUs and billing of a simulated cluster. Times are simulated seconds.

    Subclasses schedule a pod's readiness (:meth:`_schedule_ready`), make it ready
    (:meth:`_pod_ready`), drain it (:meth:`_drain`) and end it (:meth:`_terminate`); they call
    :meth:`_start_pods` once their own state exists.
    """

    arrived: int
    """Requests of the workload that have arrived (set by the subclass)."""
    log: Sized
    """One row per request that ended (set by the subclass)."""
    _arrival_s: Sized
    """The workload's arrival times (set by the subclass)."""

    def __init__(self, spec: ClusterSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.pools: tuple[PoolSpec, ...] = spec.pools
        self.rng = rng
        self.now_s = 0.0
        self.gpu_total = dict(spec.gpu_inventory)
        self.gpu_free = dict(spec.gpu_inventory)
        self.desired = [p.initial_replicas for p in spec.pools]
        self.pool_pods: list[list[Pod]] = [[] for _ in spec.pools]
        self.gpu_seconds = [0.0] * len(spec.pools)
        self.cold_start_factor = [1.0] * len(spec.pools)
        """Multiplies each pool's cold starts (the slow-cold-start fault sets it above 1)."""
        self.fault_log: list[tuple[float, str]] = []
        """(time s, description) of every injected fault, for ``info`` and reports."""
        self._pending: dict[str, deque[Pod]] = {gpu: deque() for gpu in spec.gpu_inventory}
        self._pod_count = 0

    @property
    def arrivals_left(self) -> int:
        """Requests of the workload that have not arrived yet."""
        return len(self._arrival_s) - self.arrived

    @property
    def in_flight(self) -> int:
        """Requests that arrived and have neither finished nor failed."""
        return self.arrived - len(self.log)

    def _start_pods(self) -> None:
        """Create every pool's initial replicas, ready at time 0 unless ``start_cold``."""
        for index, pool in enumerate(self.pools):
            for _ in range(pool.initial_replicas):
                pod = self._create_pod(index)
                if not self.spec.start_cold and pod.phase == PodPhase.STARTING:
                    pod.ready_at_s = 0.0
                    self._pod_ready(pod)

    def set_replicas(self, pool: int, replicas: int) -> None:
        """Set a pool's desired replica count now (the Deployment's ``spec.replicas``)."""
        if replicas < 0:
            raise ValueError(f"pool {self.pools[pool].name!r}: replicas must be >= 0")
        self.desired[pool] = replicas
        active = [p for p in self.pool_pods[pool] if p.phase <= PodPhase.READY]
        for _ in range(replicas - len(active)):
            self._create_pod(pool)
        surplus = len(active) - replicas
        if surplus > 0:
            # Kubernetes' ReplicaSet deletes unscheduled, then not-ready, then newest pods first.
            for pod in sorted(active, key=lambda p: (p.phase, -p.id))[:surplus]:
                self._remove_pod(pod)

    def add_pod(self, pool: int) -> Pod:
        """One more pod in ``pool`` now (desired replicas + 1), as when a ReplicaSet outside the
        simulator creates one; it waits for GPUs, then cold-starts."""
        self.desired[pool] += 1
        return self._create_pod(pool)

    def remove_pod(self, pod: Pod) -> None:
        """Remove this pod now (desired replicas - 1), as when a ReplicaSet outside the
        simulator deletes it: a pending or starting pod goes, a ready one drains. A pod already
        draining or gone is left as it is."""
        if pod.phase > PodPhase.READY:
            return
        self.desired[pod.pool] = max(0, self.desired[pod.pool] - 1)
        self._remove_pod(pod)

    def gpu_hours(self, pool: int) -> float:
        """GPU-hours the pool has held so far (starting, ready and draining pods)."""
        live = sum((self.now_s - p.gpu_since_s) * p.gpus
                   for p in self.pool_pods[pool] if p.holds_gpus)
        return (self.gpu_seconds[pool] + live) / 3600.0

    def cost_usd(self, pool: int) -> float:
        """US dollars the pool has cost so far."""
        return self.gpu_hours(pool) * self.pools[pool].gpu_price

    def pods_in(self, pool: int, phase: PodPhase) -> int:
        """Number of the pool's pods in ``phase``."""
        return sum(1 for p in self.pool_pods[pool] if p.phase == phase)

    def _create_pod(self, pool: int) -> Pod:
        spec = self.pools[pool]
        self._pod_count += 1
        pod = Pod(self._pod_count, f"{spec.name}-{self._pod_count}", pool,
                  spec.gpus_per_replica, self.now_s)
        self.pool_pods[pool].append(pod)
        queue = self._pending[spec.gpu_type]
        if not queue and self.gpu_free[spec.gpu_type] >= pod.gpus:
            self._bind(pod)
        else:
            queue.append(pod)
        return pod

    def _bind(self, pod: Pod) -> None:
        """Give the pod its GPUs and start its cold start."""
        spec = self.pools[pod.pool]
        self.gpu_free[spec.gpu_type] -= pod.gpus
        pod.phase = PodPhase.STARTING
        pod.gpu_since_s = self.now_s
        cold_start_s = spec.replica_cold_start.sample(self.rng) * self.cold_start_factor[pod.pool]
        pod.ready_at_s = self.now_s + cold_start_s
        self._schedule_ready(pod)

    def _bind_pending(self, gpu_type: str) -> None:
        queue = self._pending[gpu_type]
        while queue and self.gpu_free[gpu_type] >= queue[0].gpus:
            self._bind(queue.popleft())

    def _unbind(self, pod: Pod) -> None:
        """The pod is gone: bill its GPU time, free its GPUs, start pending pods."""
        index = pod.pool
        gpu_type = self.pools[index].gpu_type
        if pod.holds_gpus:
            self.gpu_seconds[index] += (self.now_s - pod.gpu_since_s) * pod.gpus
            self.gpu_free[gpu_type] += pod.gpus
        pod.phase = PodPhase.GONE
        self.pool_pods[index].remove(pod)
        self._bind_pending(gpu_type)

    def _remove_pod(self, pod: Pod) -> None:
        """A scale-down removes the pod: deleted if it has no GPUs yet, stopped if starting,
        drained if ready."""
        if pod.phase == PodPhase.PENDING:
            self._pending[self.pools[pod.pool].gpu_type].remove(pod)
            pod.phase = PodPhase.GONE
            self.pool_pods[pod.pool].remove(pod)
        elif pod.phase == PodPhase.STARTING:
            self._terminate(pod)
        elif pod.phase == PodPhase.READY:
            self._drain(pod)

    @abstractmethod
    def _schedule_ready(self, pod: Pod) -> None:
        """Arrange for :meth:`_pod_ready` at ``pod.ready_at_s``."""

    @abstractmethod
    def _pod_ready(self, pod: Pod) -> None:
        """The pod finished its cold start (ignore it unless still STARTING)."""

    @abstractmethod
    def _drain(self, pod: Pod) -> None:
        """A ready pod stops taking requests and finishes (or drops) the ones it has."""

    @abstractmethod
    def _terminate(self, pod: Pod) -> None:
        """The pod is gone (its subclass state settled, then :meth:`_unbind`)."""
