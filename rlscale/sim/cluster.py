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
from rlscale.sim.fleet import PodFleet
from rlscale.sim.pod import Pod, PodPhase
from rlscale.sim.request import Request, RequestState
from rlscale.sim.router import Router
from rlscale.sim.spec import ClusterSpec
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


class Cluster(PodFleet):
    """A simulated Kubernetes cluster serving one workload.

    Args:
        spec: pools, GPU inventory and gateway settings.
        workload: the requests that will arrive (times relative to the cluster's time 0).
        rng: the only source of randomness (cold starts, routing, faults).
        step_by_step: engines advance one step per event (the slow reference mode).
    """

    log: RequestLog
    _arrival_s: list[float]

    def __init__(self, spec: ClusterSpec, workload: Workload, rng: np.random.Generator,
                 *, step_by_step: bool = False) -> None:
        super().__init__(spec, rng)
        self.step_by_step = step_by_step
        self.log = RequestLog()
        self.router = Router([p.routing_weight for p in spec.pools], spec.routing, rng)
        self.gateway: deque[Request] = deque()
        self.retired_kv_seconds = [0.0] * len(spec.pools)
        self.retired_ready_seconds = [0.0] * len(spec.pools)
        self.arrived = 0
        self._events: list[tuple[float, int, int, object, int]] = []
        self._seq = 0
        self._arrival_s = workload.arrival_s.tolist()
        self._prompt = workload.prompt_tokens.tolist()
        self._output = workload.output_tokens.tolist()
        self._ready_since: dict[int, float] = {}
        self._start_pods()

    # ------------------------------------------------------------------ control surface
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

    def _schedule_ready(self, pod: Pod) -> None:
        self._push(pod.ready_at_s, _POD_READY, pod, 0)

    def _pod_ready(self, pod: Pod) -> None:
        if pod.phase != PodPhase.STARTING:
            return  # deleted or crashed while starting
        pod.phase = PodPhase.READY
        pod.engine = ReplicaEngine(self.pools[pod.pool].profile, self.now_s, self._on_finish,
                                   step_by_step=self.step_by_step)
        self._ready_since[pod.id] = self.now_s
        self.router.add_ready(pod)
        self._flush_gateway()

    def _drain(self, pod: Pod) -> None:
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
        """The pod is gone: keep its engine's accounting, release its GPUs, start pending
        pods."""
        index = pod.pool
        if pod.engine is not None:
            engine = pod.engine
            engine.sync(self.now_s)
            self.retired_kv_seconds[index] += engine.kv_token_seconds / engine.kv_capacity
            self.retired_ready_seconds[index] += self.now_s - self._ready_since.pop(pod.id)
            pod.engine = None
        pod.event_version += 1
        self._unbind(pod)
