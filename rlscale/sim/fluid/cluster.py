"""The fast engine's cluster: the same pods, GPUs, gateway and routing as
:class:`rlscale.sim.cluster.Cluster`, with each pool's engines as a fluid.

Control surface and accounting match the request-level cluster (``set_replicas``,
``set_weights``, ``run_until``, ``gpu_hours``, ``cost_usd``, ``kv_integrals``, ``log``), so the
environment drives either. Pods keep their exact lifecycle (pending on GPU inventory, cold
starts drawn from the pool's distribution, draining, Kubernetes' deletion order) and billing;
what is approximated is inside the engines (:mod:`rlscale.sim.fluid.pool`) and a draining pod's
end, estimated from the engine steps its share of the pool's requests still needs.

``run_until`` works in sub-steps of ``substep_s`` (1 s): pod events apply at their times, the
router's shares hold per sub-step, arrivals are routed in one vectorized pass (waiting at the
gateway while no weighted pool has a ready pod, failing after its timeout), the pools' fluids
advance sub-step by sub-step, and the requests they finished are logged.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.cluster import SimulationStalledError
from rlscale.sim.fleet import PodFleet
from rlscale.sim.fluid.kernels import jit_enabled, route_compiled
from rlscale.sim.fluid.log import ArrayLog
from rlscale.sim.fluid.metrics import PoolMetrics
from rlscale.sim.fluid.pool import FluidPool
from rlscale.sim.fluid.requests import PoolRequests
from rlscale.sim.fluid.rows import ARRIVAL, DISPATCH, FIRST, ID, OUTPUT, PROMPT, START
from rlscale.sim.pod import Pod, PodPhase
from rlscale.sim.router import Router
from rlscale.sim.spec import ClusterSpec
from rlscale.sim.stats import FAIL_DRAIN_TIMEOUT, FAIL_GATEWAY_TIMEOUT, FAIL_TOO_LONG
from rlscale.sim.workload.workload import Workload

_POD_READY, _DRAIN_END = range(2)
SUBSTEP_S = 1.0
"""Default sub-step of the fluid, seconds."""


class FluidCluster(PodFleet):
    """A simulated cluster whose engines are fluids (see the module docstring).

    Args:
        spec: pools, GPU inventory and gateway settings.
        workload: the requests that will arrive (times relative to the cluster's time 0).
        rng: the only source of randomness (cold starts, routing).
        substep_s: the fluid's time resolution, seconds.
    """

    log: ArrayLog
    _arrival_s: NDArray[np.float64]

    def __init__(self, spec: ClusterSpec, workload: Workload, rng: np.random.Generator,
                 *, substep_s: float = SUBSTEP_S) -> None:
        if not substep_s > 0:
            raise ValueError(f"substep_s must be > 0, got {substep_s}")
        super().__init__(spec, rng)
        self.substep_s = substep_s
        self.router = Router([p.routing_weight for p in spec.pools], spec.routing, rng)
        self.log = ArrayLog()
        self.ready_seconds = [0.0] * len(spec.pools)
        self.arrived = 0
        self._arrival_s = workload.arrival_s
        self._prompt = workload.prompt_tokens
        self._output = workload.output_tokens
        self._max_len = np.array([p.profile.max_model_len for p in spec.pools], np.int64)
        mean_output = float(workload.output_tokens.mean()) if len(workload) else 1.0
        self.fluids = [FluidPool(p.profile, mean_output) for p in spec.pools]
        self.queues = [PoolRequests(f) for f in self.fluids]
        self.metrics = [PoolMetrics(p.name) for p in spec.pools]
        self._gateway = np.zeros(0, np.int64)
        self._events: list[tuple[float, int, int, Pod]] = []
        self._seq = 0
        self._drain_deadline: dict[int, float] = {}
        self._start_pods()

    # ------------------------------------------------------------------ control surface
    def set_weights(self, weights: list[float]) -> None:
        """Set the routing weight of each pool (HTTPRoute ``backendRefs[].weight``)."""
        self.router.set_weights(weights)

    # ------------------------------------------------------------------ time
    def run_until(self, end_s: float) -> None:
        """Advance to simulated time ``end_s`` (arrivals up to it included)."""
        start_s = self.now_s
        if end_s <= start_s:
            return
        count = max(1, math.ceil((end_s - start_s) / self.substep_s - 1e-9))
        bounds = np.minimum(start_s + self.substep_s * np.arange(1, count + 1), end_s)
        starts = np.concatenate([[start_s], bounds[:-1]])
        row_shares, row_serving = self.router.effective_weights(), self._serving()
        share_rows, serving_rows = [row_shares] * count, [row_serving] * count
        events = self._events
        if events and events[0][0] <= end_s:
            for j, mid_s in enumerate(((starts + bounds) / 2).tolist()):
                if events and events[0][0] <= mid_s:
                    self._events_until(mid_s)
                    row_shares, row_serving = self.router.effective_weights(), self._serving()
                share_rows[j], serving_rows[j] = row_shares, row_serving
            self._events_until(end_s)
        self.now_s = end_s
        shares = np.array(share_rows, float)
        serving = np.array(serving_rows, float).T
        tokens, requests = self._dispatch(start_s, end_s, starts, shares)
        widths = bounds - starts
        for pool, fluid in enumerate(self.fluids):
            self.ready_seconds[pool] += float(serving[pool] @ widths)
            fluid.advance(bounds, serving[pool], tokens[pool], requests[pool])
            self._finish(pool)

    def run_to_completion(self, step_s: float = 60.0, max_s: float = math.inf) -> None:
        """Run until every request has arrived and ended (or ``max_s`` is reached).

        Raises:
            SimulationStalledError: requests are in flight but nothing can ever move them.
        """
        while (self.arrivals_left or self.in_flight) and self.now_s < max_s:
            self.run_until(min(self.now_s + step_s, max_s))
            serving = any(p.phase in (PodPhase.READY, PodPhase.DRAINING)
                          for pods in self.pool_pods for p in pods)
            if not self._events and not self.arrivals_left and self.in_flight and not serving \
                    and not len(self._gateway):
                raise SimulationStalledError(
                    f"{self.in_flight} requests are stuck at t={self.now_s:.1f} s with no "
                    f"replica left to serve them")

    # ------------------------------------------------------------------ accounting
    def kv_integrals(self, pool: int | None = None) -> tuple[float, float]:
        """(KV-usage x seconds, serving-replica seconds) summed over replicas so far."""
        pools = range(len(self.pools)) if pool is None else [pool]
        kv = sum(self.fluids[i].kv_token_seconds / self.fluids[i].kv_capacity for i in pools)
        return kv, sum(self.ready_seconds[i] for i in pools)

    def _serving(self) -> list[int]:
        """Ready and draining pods per pool (the engines doing work)."""
        return [sum(1 for p in pods if p.phase in (PodPhase.READY, PodPhase.DRAINING))
                for pods in self.pool_pods]

    def ready_counts(self) -> list[int]:
        """Ready replicas per pool."""
        return [sum(1 for p in pods if p.phase == PodPhase.READY) for pods in self.pool_pods]

    # ------------------------------------------------------------------ routing
    def _dispatch(self, start_s: float, end_s: float, starts: NDArray[np.float64],
                  shares: NDArray[np.float64]) -> tuple[NDArray[np.float64],
                                                          NDArray[np.float64]]:
        """Route the gateway's waiting requests and the new arrivals; returns prompt tokens
        and requests routed to each pool in each sub-step (pools x sub-steps)."""
        count, npools = shares.shape
        last = int(np.searchsorted(self._arrival_s, end_s, side="right"))
        ids = np.concatenate([self._gateway, np.arange(self.arrived, last)])
        self.arrived = last
        tokens = np.zeros((npools, count))
        requests = np.zeros((npools, count))
        if len(ids) == 0:
            return tokens, requests
        arrival = self._arrival_s[ids]
        sub = self._substep_of(arrival, start_s, count)
        open_rows = shares.sum(axis=1) > 0
        if open_rows.all() and not len(self._gateway):
            # Every sub-step has a pool to route to and no one waits: each request is
            # dispatched when it arrives (arrivals are in time order).
            self._gateway = ids[:0]
            dispatch, step = np.maximum(arrival, starts[sub]), sub
        else:
            open_steps = np.where(open_rows, np.arange(count), count)
            next_open = np.minimum.accumulate(open_steps[::-1])[::-1][sub]
            routed = next_open < count
            dispatch = np.where(routed, np.maximum(arrival, starts[np.minimum(next_open,
                                                                              count - 1)]),
                                np.inf)
            deadline = arrival + self.spec.gateway_timeout_s
            expired = (dispatch > deadline) & (deadline <= end_s)
            self._gateway = ids[~routed & ~expired]
            self._log_failures(ids[expired], deadline[expired], -1, FAIL_GATEWAY_TIMEOUT)
            go = np.flatnonzero(routed & ~expired)
            go = go[np.argsort(dispatch[go], kind="stable")]
            if len(go) == 0:
                return tokens, requests
            ids, dispatch, step = ids[go], dispatch[go], next_open[go]
        # The router's own draws, one per request with a choice of pools, as the request-level
        # engine takes them: the same requests go to the same pools, and the cold starts drawn
        # from the same generator in between come out the same in both engines.
        cumulative = np.cumsum(shares, axis=1)[step]
        choice = (np.count_nonzero(shares > 0, axis=1) > 1)[step]
        draw = np.zeros(len(ids))
        draw[choice] = self.router.uniforms(int(np.count_nonzero(choice)))
        pool = np.argmax(draw[:, None] * cumulative[:, -1:] < cumulative, axis=1)
        prompt = self._prompt[ids]
        too_long = prompt >= self._max_len[pool]
        if too_long.any():
            for index in np.unique(pool[too_long]):
                chosen = too_long & (pool == index)
                self._log_failures(ids[chosen], dispatch[chosen], int(index), FAIL_TOO_LONG)
            keep = ~too_long
            ids, dispatch, pool, prompt = ids[keep], dispatch[keep], pool[keep], prompt[keep]
        if jit_enabled():
            tokens, requests, rows, per_pool = route_compiled(
                ids, dispatch, pool, prompt, self._output, self._arrival_s, self._max_len,
                np.array([queue.routed_tokens for queue in self.queues]), start_s,
                self.substep_s, count)
            first = 0
            for queue, end in zip(self.queues, np.cumsum(per_pool).tolist(), strict=True):
                if end > first:
                    queue.add_rows(rows[first:end])
                first = end
            return tokens, requests
        output = np.minimum(self._output[ids], self._max_len[pool] - prompt)
        sub = self._substep_of(dispatch, start_s, count)
        flat = pool * count + sub
        tokens = np.bincount(flat, prompt.astype(np.float64), npools * count).reshape(
            npools, count).astype(np.float64)
        requests = np.bincount(flat, None, npools * count).reshape(npools, count).astype(
            np.float64)
        # Each pool's requests, in dispatch order (a stable sort of small integers is a
        # radix sort), go to its queue.
        order = np.argsort(pool.astype(np.uint8) if npools < 256 else pool, kind="stable")
        ids, dispatch, prompt, output = ids[order], dispatch[order], prompt[order], output[order]
        arrival = self._arrival_s[ids]
        first = 0
        for queue, end in zip(self.queues, np.cumsum(np.bincount(pool, None, npools)).tolist(),
                              strict=True):
            if end > first:
                queue.add(ids[first:end], arrival[first:end], dispatch[first:end],
                          prompt[first:end], output[first:end])
            first = end
        return tokens, requests

    def _substep_of(self, times_s: NDArray[np.float64], start_s: float,
                    count: int) -> NDArray[np.int64]:
        """The sub-step (of ``count`` from ``start_s``) each of ``times_s`` falls in."""
        sub = ((times_s - start_s) / self.substep_s).astype(np.int64)
        # np.minimum / np.maximum, not np.clip: the same numbers at a third of the cost.
        return np.minimum(np.maximum(sub, 0, out=sub), count - 1, out=sub)

    def _finish(self, pool: int) -> None:
        """Log the pool's requests that finished by now; update its exported metrics."""
        done, finish, ttft_s, queue_s = self.queues[pool].resolve()
        fluid, metrics = self.fluids[pool], self.metrics[pool]
        metrics.observe_engine(fluid, ttft_s, queue_s, finish - done[:, DISPATCH])
        if not len(finish):
            return
        first, arrival, output = done[:, FIRST], done[:, ARRIVAL], done[:, OUTPUT]
        count = len(finish)
        self.log.append({
            "arrival_s": arrival,
            "ttft_s": first - arrival,
            "itl_s": np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), 0.0),
            "e2e_s": finish - arrival,
            "queue_s": done[:, START] - done[:, DISPATCH],
            "end_s": finish,
            "id": done[:, ID].astype(np.int64),
            "pool": np.full(count, pool, np.int64),
            "prompt_tokens": done[:, PROMPT].astype(np.int64),
            "output_tokens": output.astype(np.int64),
            "preemptions": np.zeros(count, np.int64),
            "failure": np.zeros(count, np.int64),
        })

    def _log_failures(self, ids: NDArray[np.int64], at_s: NDArray[np.float64], pool: int,
                      reason: int) -> None:
        if not len(ids):
            return
        nan = np.full(len(ids), np.nan)
        self.log.append({
            "arrival_s": self._arrival_s[ids], "ttft_s": nan, "itl_s": nan, "e2e_s": nan,
            "queue_s": nan, "end_s": at_s, "id": ids, "pool": np.full(len(ids), pool, np.int64),
            "prompt_tokens": self._prompt[ids], "output_tokens": self._output[ids],
            "preemptions": np.zeros(len(ids), np.int64),
            "failure": np.full(len(ids), reason, np.int64)})

    # ------------------------------------------------------------------ pods
    def _events_until(self, time_s: float) -> None:
        events = self._events
        while events and events[0][0] <= time_s:
            at_s, _seq, kind, pod = heapq.heappop(events)
            self.now_s = max(self.now_s, at_s)
            if kind == _POD_READY:
                self._pod_ready(pod)
            else:
                self._drain_end(pod)

    def _push(self, at_s: float, kind: int, pod: Pod) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at_s, self._seq, kind, pod))

    def _schedule_ready(self, pod: Pod) -> None:
        self._push(pod.ready_at_s, _POD_READY, pod)

    def _pod_ready(self, pod: Pod) -> None:
        if pod.phase != PodPhase.STARTING:
            return
        pod.phase = PodPhase.READY
        self.router.add_ready(pod)

    def _drain(self, pod: Pod) -> None:
        serving = sum(1 for p in self.pool_pods[pod.pool]
                      if p.phase in (PodPhase.READY, PodPhase.DRAINING))
        self.router.remove_ready(pod)
        pod.phase = PodPhase.DRAINING
        self._drain_deadline[pod.id] = self.now_s + self.spec.drain_timeout_s
        drain_s = self._drain_estimate_s(pod.pool, serving)
        if drain_s <= 0:
            self._terminate(pod)
        else:
            self._push(self.now_s + min(drain_s, self.spec.drain_timeout_s), _DRAIN_END, pod)

    def _drain_estimate_s(self, pool: int, serving: int) -> float:
        """Seconds until a pod leaving a pool of ``serving`` replicas has finished its share
        of the pool's requests: the largest remaining output among its share, in engine
        steps of the pool's current length."""
        remaining = self.queues[pool].remaining_steps()
        if not len(remaining):
            return 0.0
        share = max(1, math.ceil(len(remaining) / max(serving, 1)))
        # The (1 - 1/(share + 1)) quantile, linear between order statistics (numpy's default),
        # from a partial sort around it.
        rank = (len(remaining) - 1) * (1.0 - 1.0 / (share + 1))
        low = math.floor(rank)
        high = min(low + 1, len(remaining) - 1)
        ordered = np.partition(remaining, (low, high))
        longest = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
        return float(longest) * self.fluids[pool].step_s

    def _drain_end(self, pod: Pod) -> None:
        if pod.phase != PodPhase.DRAINING:
            return
        others = any(p.phase in (PodPhase.READY, PodPhase.DRAINING)
                     for p in self.pool_pods[pod.pool] if p is not pod)
        deadline = self._drain_deadline[pod.id]
        if not others and len(self.queues[pod.pool]) and self.now_s < deadline:
            # The pool's last serving pod keeps its requests until they finish.
            wait_s = max(self._drain_estimate_s(pod.pool, 1), self.substep_s)
            self._push(min(self.now_s + wait_s, deadline), _DRAIN_END, pod)
            return
        if not others and len(self.queues[pod.pool]):
            lost = self.queues[pod.pool].take_all()
            self._log_failures(lost, np.full(len(lost), self.now_s), pod.pool,
                               FAIL_DRAIN_TIMEOUT)
        self._terminate(pod)

    def _terminate(self, pod: Pod) -> None:
        self._drain_deadline.pop(pod.id, None)
        self._unbind(pod)

    def pod_counts(self) -> list[tuple[int, int, int, int]]:
        """(ready, starting, pending, draining) pods per pool."""
        out = []
        for pods in self.pool_pods:
            phases = [p.phase for p in pods]
            out.append((phases.count(PodPhase.READY), phases.count(PodPhase.STARTING),
                        phases.count(PodPhase.PENDING), phases.count(PodPhase.DRAINING)))
        return out
