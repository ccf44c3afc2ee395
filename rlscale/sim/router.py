"""The gateway's router: a weighted split across pools, then a replica inside the pool.

Across pools it behaves like a Gateway API HTTPRoute with weighted ``backendRefs`` (Envoy's
weighted clusters): each request picks a pool at random in proportion to the weights, over the
pools that have ready replicas and a positive weight. Inside a pool it sends the request to the
ready replica with the fewest outstanding requests (ties broken round robin), as vLLM
production-stack's and AIBrix's least-request routers do; plain round robin is an option.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.pod import Pod
from rlscale.weights import traffic_shares

_UNIFORM_BLOCK = 4096


class Router:
    """Chooses a pool and a ready pod for each request; all randomness from ``rng``."""

    def __init__(self, weights: list[float], policy: str, rng: np.random.Generator) -> None:
        self.weights = list(weights)
        self.least_outstanding = policy == "least_outstanding"
        self.ready: list[list[Pod]] = [[] for _ in weights]
        self._rr = [0] * len(weights)
        self._rng = rng
        self._uniforms = rng.random(_UNIFORM_BLOCK)
        self._next_uniform = 0
        self._eligible: list[int] = []
        self._cumulative: list[float] = []
        self._dirty = True

    def set_weights(self, weights: list[float]) -> None:
        """Replace the per-pool weights (any non-negative numbers; normalized when routing)."""
        if len(weights) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} weights, got {len(weights)}")
        if any(not w >= 0 for w in weights):
            raise ValueError(f"weights must be >= 0, got {weights}")
        self.weights = list(weights)
        self._dirty = True

    def add_ready(self, pod: Pod) -> None:
        """A pod of ``pod.pool`` became ready and may receive traffic."""
        self.ready[pod.pool].append(pod)
        self._dirty = True

    def remove_ready(self, pod: Pod) -> None:
        """A pod stops receiving traffic (draining, crashed)."""
        self.ready[pod.pool].remove(pod)
        self._dirty = True

    def effective_weights(self) -> list[float]:
        """The share of new traffic each pool receives now (sums to 1, or all 0)."""
        return traffic_shares(self.weights, [bool(pods) for pods in self.ready])

    def _refresh(self) -> None:
        if not self._dirty:
            return
        self._eligible = [i for i, w in enumerate(self.weights) if w > 0 and self.ready[i]]
        total = 0.0
        self._cumulative = []
        for pool in self._eligible:
            total += self.weights[pool]
            self._cumulative.append(total)
        self._dirty = False

    def uniforms(self, count: int) -> NDArray[np.float64]:
        """The next ``count`` uniform draws of the pool choice, as :meth:`pick` would take
        them one per request that has more than one pool to choose from (for an engine that
        routes requests in batches and should draw what this router draws)."""
        out = np.empty(count)
        filled = 0
        while filled < count:
            if self._next_uniform == _UNIFORM_BLOCK:
                self._uniforms = self._rng.random(_UNIFORM_BLOCK)
                self._next_uniform = 0
            take = min(count - filled, _UNIFORM_BLOCK - self._next_uniform)
            out[filled:filled + take] = self._uniforms[self._next_uniform:
                                                       self._next_uniform + take]
            self._next_uniform += take
            filled += take
        return out

    def pick(self) -> Pod | None:
        """The pod the next request goes to, or None if no weighted pool has a ready pod."""
        self._refresh()
        eligible = self._eligible
        if not eligible:
            return None
        if len(eligible) == 1:
            pool = eligible[0]
        else:
            if self._next_uniform == _UNIFORM_BLOCK:
                self._uniforms = self._rng.random(_UNIFORM_BLOCK)
                self._next_uniform = 0
            u = float(self._uniforms[self._next_uniform]) * self._cumulative[-1]
            self._next_uniform += 1
            pool = eligible[min(bisect_right(self._cumulative, u), len(eligible) - 1)]
        pods = self.ready[pool]
        count = len(pods)
        start = self._rr[pool] % count
        self._rr[pool] = start + 1
        if not self.least_outstanding or count == 1:
            return pods[start]
        best = pods[start]
        best_load = best.engine.outstanding if best.engine else 0
        for i in range(1, count):
            pod = pods[(start + i) % count]
            load = pod.engine.outstanding if pod.engine else 0
            if load < best_load:
                best, best_load = pod, load
        return best
