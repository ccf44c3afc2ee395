"""The simulated cluster: pools of pods running vLLM engines, GPUs, a gateway, and the event loop.

Everything happens in simulated seconds. The loop is short: take the earliest of the next request
arrival and the next scheduled event, handle it, schedule what follows. Engines advance whole
segments of identical steps at a time (see :mod:`rlscale.sim.engine`), so the loop runs a few
events per request, not one per token.

An autoscaler talks to the cluster as it would to Kubernetes: :meth:`Cluster.set_replicas` is a
Deployment's ``spec.replicas`` (the scale subresource), :meth:`Cluster.set_weights` an HTTPRoute's
``backendRefs[].weight``. Pods follow a Deployment's lifecycle: PENDING while no GPU of their type
is free, STARTING for a cold start drawn from the pool's distribution, READY, DRAINING after a
scale-down (no new requests, running ones finish), GONE.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

import numpy as np

from rlscale.sim.engine import ReplicaEngine
from rlscale.sim.pod import Pod, PodPhase
from rlscale.sim.request import Request, RequestState
from rlscale.sim.router import Router
from rlscale.sim.spec import ClusterSpec, PoolSpec
from rlscale.sim.stats import (
    FAIL_DRAIN_TIMEOUT,
    FAIL_GATEWAY_TIMEOUT,
    FAIL_POD_LOST,
    FAIL_TOO_LONG,
    RequestLog,
)
from rlscale.sim.workload.workload import Workload

_ENGINE, _POD_READY, _DRAIN_DEADLINE, _CALLBACK = range(4)


class SimulationStalledError(RuntimeError):
    """Requests are in flight but no event can ever move them (a bug or an impossible setup)."""


class Cluster:
    """A simulated Kubernetes cluster serving one workload.

    Args:
        spec: pools, GPU inventory and gateway settings.
        workload: the requests that will arrive (times relative to the cluster's time 0).
        rng: the only source of randomness (cold starts, routing, faults).
        step_by_step: engines advance one step per event (the slow reference mode).
    """

    def __init__(self, spec: ClusterSpec, workload: Workload, rng: np.random.Generator,
                 *, step_by_step: bool = False) -> None:
        self.spec = spec
        self.step_by_step = step_by_step
        self.pools: tuple[PoolSpec, ...] = spec.pools
        self.rng = rng
        self.now_s = 0.0
        self.log = RequestLog()
        self.router = Router([p.routing_weight for p in spec.pools], spec.routing, rng)
        self.gateway: deque[Request] = deque()
        self.gpu_total = dict(spec.gpu_inventory)
        self.gpu_free = dict(spec.gpu_inventory)
        self.desired = [p.initial_replicas for p in spec.pools]
        self.pool_pods: list[list[Pod]] = [[] for _ in spec.pools]
        self.gpu_seconds = [0.0] * len(spec.pools)
        self.retired_kv_seconds = [0.0] * len(spec.pools)
        self.retired_ready_seconds = [0.0] * len(spec.pools)
        self.arrived = 0
        self.cold_start_factor = [1.0] * len(spec.pools)
        """Multiplies each pool's cold starts (the slow-cold-start fault sets it above 1)."""
        self.fault_log: list[tuple[float, str]] = []
        """(time s, description) of every injected fault, for ``info`` and reports."""
        self._pending: dict[str, deque[Pod]] = {gpu: deque() for gpu in spec.gpu_inventory}
        self._events: list[tuple[float, int, int, object, int]] = []
        self._seq = 0
        self._pod_count = 0
        self._arrival_s = workload.arrival_s.tolist()
        self._prompt = workload.prompt_tokens.tolist()
        self._output = workload.output_tokens.tolist()
        self._ready_since: dict[int, float] = {}
        for index, pool in enumerate(spec.pools):
            for _ in range(pool.initial_replicas):
                pod = self._create_pod(index)
                if not spec.start_cold and pod.phase == PodPhase.STARTING:
                    pod.ready_at_s = 0.0
                    self._pod_ready(pod)

    # ------------------------------------------------------------------ control surface
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

    def set_weights(self, weights: list[float]) -> None:
        """Set the routing weight of each pool (HTTPRoute ``backendRefs[].weight``)."""
        self.router.set_weights(weights)
        self._flush_gateway()

    def schedule(self, at_s: float, action: Callable[[Cluster], None]) -> None:
        """Run ``action(cluster)`` at simulated time ``at_s`` (faults, scripted changes)."""
        self._push(max(at_s, self.now_s), _CALLBACK, action, 0)

    def crash_pod(self, pod: Pod, *, replace: bool = True) -> None:
        """The pod's container dies: its requests are retried or fail; the Deployment controller
        creates a replacement unless ``replace`` is False."""
        if pod.phase == PodPhase.GONE:
            return
        was_active = pod.phase <= PodPhase.READY
        if pod.phase == PodPhase.READY:
            self.router.remove_ready(pod)
        if pod.engine is not None:
            for request in pod.engine.abort_all():
                self._retry_or_fail(request)
        self._terminate(pod)
        if replace and was_active:
            self._create_pod(pod.pool)

    def lose_gpus(self, gpu_type: str, count: int) -> None:
        """A node with ``count`` GPUs of ``gpu_type`` is lost; pods on it crash and are
        recreated (pending until GPUs are free again)."""
        self.gpu_total[gpu_type] -= count
        self.gpu_free[gpu_type] -= count
        holders = [p for pods in self.pool_pods for p in pods
                   if p.holds_gpus and self.pools[p.pool].gpu_type == gpu_type]
        holders.sort(key=lambda p: -p.id)
        while self.gpu_free[gpu_type] < 0 and holders:
            self.crash_pod(holders.pop(0))

    def restore_gpus(self, gpu_type: str, count: int) -> None:
        """``count`` GPUs of ``gpu_type`` come back (the node is replaced)."""
        self.gpu_total[gpu_type] += count
        self.gpu_free[gpu_type] += count
        self._bind_pending(gpu_type)

    # ------------------------------------------------------------------ time
    @property
    def arrivals_left(self) -> int:
        """Requests of the workload that have not arrived yet."""
        return len(self._arrival_s) - self.arrived

    @property
    def in_flight(self) -> int:
        """Requests that arrived and have neither finished nor failed."""
        return self.arrived - len(self.log)

    def run_until(self, end_s: float) -> None:
        """Process every arrival and event up to simulated time ``end_s`` (inclusive)."""
        events = self._events
        arrivals = self._arrival_s
        total = len(arrivals)
        while True:
            next_arrival = arrivals[self.arrived] if self.arrived < total else math.inf
            next_event = events[0][0] if events else math.inf
            if next_arrival <= next_event:
                if next_arrival > end_s:
                    break
                self.now_s = next_arrival
                self._arrive()
            else:
                if next_event > end_s:
                    break
                at_s, _seq, kind, obj, version = heapq.heappop(events)
                self.now_s = at_s
                if kind == _ENGINE:
                    self._engine_event(obj, version)  # type: ignore[arg-type]
                elif kind == _POD_READY:
                    self._pod_ready(obj)  # type: ignore[arg-type]
                elif kind == _DRAIN_DEADLINE:
                    self._drain_deadline(obj)  # type: ignore[arg-type]
                else:
                    obj(self)  # type: ignore[operator]
        self.now_s = max(self.now_s, end_s)
        self._expire_gateway()
        for pods in self.pool_pods:
            for pod in pods:
                if pod.engine is not None:
                    pod.engine.sync(self.now_s)

    def run_to_completion(self, step_s: float = 60.0, max_s: float = math.inf) -> None:
        """Run until every request has arrived and ended (or ``max_s`` is reached).

        Raises:
            SimulationStalledError: requests are in flight but nothing can ever move them.
        """
        while (self.arrivals_left or self.in_flight) and self.now_s < max_s:
            self.run_until(min(self.now_s + step_s, max_s))
            if not self._events and not self.arrivals_left and self.in_flight and (
                    not self.gateway):
                raise SimulationStalledError(
                    f"{self.in_flight} requests are stuck at t={self.now_s:.1f} s with no event "
                    f"pending (an engine cannot admit its queue head)")

    # ------------------------------------------------------------------ accounting
    def gpu_hours(self, pool: int) -> float:
        """GPU-hours the pool has held so far (starting, ready and draining pods)."""
        live = sum((self.now_s - p.gpu_since_s) * p.gpus
                   for p in self.pool_pods[pool] if p.holds_gpus)
        return (self.gpu_seconds[pool] + live) / 3600.0

    def cost_usd(self, pool: int) -> float:
        """US dollars the pool has cost so far."""
        return self.gpu_hours(pool) * self.pools[pool].gpu_price

    def kv_integrals(self, pool: int | None = None) -> tuple[float, float]:
        """(KV-usage x seconds, ready-replica seconds) summed over replicas so far."""
        pools = range(len(self.pools)) if pool is None else [pool]
        kv_seconds = ready_seconds = 0.0
        for index in pools:
            kv_seconds += self.retired_kv_seconds[index]
            ready_seconds += self.retired_ready_seconds[index]
            for pod in self.pool_pods[index]:
                if pod.engine is not None:
                    kv_seconds += pod.engine.kv_token_seconds / pod.engine.kv_capacity
                    ready_seconds += self.now_s - self._ready_since[pod.id]
        return kv_seconds, ready_seconds

    def mean_kv_cache_usage(self, pool: int | None = None) -> float:
        """Time-weighted mean KV-cache usage of ready replicas (fraction), over the run so far."""
        kv_seconds, ready_seconds = self.kv_integrals(pool)
        return kv_seconds / ready_seconds if ready_seconds > 0 else 0.0

    def pods_in(self, pool: int, phase: PodPhase) -> int:
        """Number of the pool's pods in ``phase``."""
        return sum(1 for p in self.pool_pods[pool] if p.phase == phase)

    # ------------------------------------------------------------------ internals
    def _push(self, at_s: float, kind: int, obj: object, version: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at_s, self._seq, kind, obj, version))

    def _arrive(self) -> None:
        i = self.arrived
        self.arrived = i + 1
        request = Request(i, self._arrival_s[i], self._prompt[i], self._output[i])
        if self.gateway:
            self._expire_gateway()
            if self.gateway:
                self.gateway.append(request)
                return
        self._dispatch(request)

    def _dispatch(self, request: Request) -> None:
        pod = self.router.pick()
        if pod is None:
            request.state = RequestState.GATEWAY
            self.gateway.append(request)
        else:
            self._send(request, pod)

    def _send(self, request: Request, pod: Pod) -> None:
        engine = pod.engine
        assert engine is not None
        request.pool = pod.pool
        request.pod = pod.id
        max_len = engine.profile.max_model_len
        if request.prompt_tokens >= max_len:
            self._fail(request, FAIL_TOO_LONG, self.now_s)
            return
        if request.prompt_tokens + request.output_tokens > max_len:
            request.output_tokens = max_len - request.prompt_tokens
        if engine.enqueue(request, self.now_s):
            self._schedule_engine(pod, engine)

    def _schedule_engine(self, pod: Pod, engine: ReplicaEngine) -> None:
        pod.event_version += 1
        at_s = engine.next_event_s
        if at_s != math.inf:
            self._push(at_s, _ENGINE, pod, pod.event_version)

    def _engine_event(self, pod: Pod, version: int) -> None:
        engine = pod.engine
        if version != pod.event_version or engine is None:
            return
        engine.on_event(self.now_s)
        self._schedule_engine(pod, engine)
        if pod.phase == PodPhase.DRAINING and engine.outstanding == 0:
            self._terminate(pod)

    def _on_finish(self, request: Request, _now_s: float) -> None:
        self.log.finished(request)

    def _fail(self, request: Request, reason: int, at_s: float) -> None:
        request.state = RequestState.FAILED
        self.log.failed(request, reason, at_s)

    def _retry_or_fail(self, request: Request) -> None:
        if request.retries >= self.spec.max_retries:
            self._fail(request, FAIL_POD_LOST, self.now_s)
            return
        request.retries += 1
        request.generated = request.prefilled = 0
        request.prefill_target = request.prompt_tokens
        request.first_token_s = request.first_scheduled_s = math.nan
        if self.gateway:
            self.gateway.append(request)
        else:
            self._dispatch(request)

    def _expire_gateway(self) -> None:
        timeout = self.spec.gateway_timeout_s
        gateway = self.gateway
        while gateway and gateway[0].arrival_s + timeout <= self.now_s:
            request = gateway.popleft()
            self._fail(request, FAIL_GATEWAY_TIMEOUT, request.arrival_s + timeout)

    def _flush_gateway(self) -> None:
        """Send waiting requests, oldest first, now that a pod is ready or weights changed."""
        self._expire_gateway()
        while self.gateway:
            pod = self.router.pick()
            if pod is None:
                return
            self._send(self.gateway.popleft(), pod)

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
        self._push(pod.ready_at_s, _POD_READY, pod, 0)

    def _bind_pending(self, gpu_type: str) -> None:
        queue = self._pending[gpu_type]
        while queue and self.gpu_free[gpu_type] >= queue[0].gpus:
            self._bind(queue.popleft())

    def _pod_ready(self, pod: Pod) -> None:
        if pod.phase != PodPhase.STARTING:
            return  # deleted or crashed while starting
        pod.phase = PodPhase.READY
        pod.engine = ReplicaEngine(self.pools[pod.pool].profile, self.now_s, self._on_finish,
                                   step_by_step=self.step_by_step)
        self._ready_since[pod.id] = self.now_s
        self.router.add_ready(pod)
        self._flush_gateway()

    def _remove_pod(self, pod: Pod) -> None:
        if pod.phase == PodPhase.PENDING:
            self._pending[self.pools[pod.pool].gpu_type].remove(pod)
            pod.phase = PodPhase.GONE
            self.pool_pods[pod.pool].remove(pod)
        elif pod.phase == PodPhase.STARTING:
            self._terminate(pod)
        elif pod.phase == PodPhase.READY:
            self.router.remove_ready(pod)
            pod.phase = PodPhase.DRAINING
            assert pod.engine is not None
            if pod.engine.outstanding == 0:
                self._terminate(pod)
            else:
                self._push(self.now_s + self.spec.drain_timeout_s, _DRAIN_DEADLINE, pod, 0)

    def _drain_deadline(self, pod: Pod) -> None:
        if pod.phase != PodPhase.DRAINING or pod.engine is None:
            return
        for request in pod.engine.abort_all():
            self._fail(request, FAIL_DRAIN_TIMEOUT, self.now_s)
        self._terminate(pod)

    def _terminate(self, pod: Pod) -> None:
        """The pod is gone: release its GPUs, keep its accounting, start pending pods."""
        index = pod.pool
        if pod.holds_gpus:
            self.gpu_seconds[index] += (self.now_s - pod.gpu_since_s) * pod.gpus
            self.gpu_free[self.pools[index].gpu_type] += pod.gpus
        if pod.engine is not None:
            engine = pod.engine
            engine.sync(self.now_s)
            self.retired_kv_seconds[index] += engine.kv_token_seconds / engine.kv_capacity
            self.retired_ready_seconds[index] += self.now_s - self._ready_since.pop(pod.id)
            pod.engine = None
        pod.phase = PodPhase.GONE
        pod.event_version += 1
        self.pool_pods[index].remove(pod)
        self._bind_pending(self.pools[index].gpu_type)
