"""Each request's first-token and finish times, read off a fluid pool's curves.

Requests routed to a pool form one FIFO queue of prompt tokens: request ``i`` is prefilled when
the pool's cumulative prefilled tokens reach ``A_i`` (the prompt tokens routed to the pool up
to and including it), and no sooner than its own prompt takes on one engine (its chunks of
``max_num_batched_tokens``, each one engine step, from when the queue reaches it). It then
emits one token per engine step: it finishes when the pool's cumulative steps per replica have
grown by ``output_tokens - 1`` since its first token. All of it is vectorized over requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.fluid.pool import FluidPool

FloatArray = NDArray[np.float64]
_FIELDS = ("id", "arrival_s", "dispatch_s", "prompt", "output", "target", "first_s", "start_s",
           "step_target")


def crossing(curve: FloatArray, times: FloatArray, targets: FloatArray,
             rate: FloatArray | None = None) -> FloatArray:
    """First time each non-decreasing ``curve`` (values at ``times``) reaches each target;
    ``inf`` where it does not within the curve, its first time where it starts above.

    Between two points the curve is linear, or, with ``rate`` (per unit of time, for the
    segment ending at each point), grows at that rate from the segment's start until it
    reaches the segment's end value."""
    index = np.searchsorted(curve, targets, side="left")
    out = np.full(len(targets), np.inf)
    inside = index < len(curve)
    at = index[inside]
    before = np.maximum(at - 1, 0)
    span = curve[at] - curve[before]
    share = np.divide(targets[inside] - curve[before], span, out=np.zeros(len(at)),
                      where=span > 0)
    width = times[at] - times[before]
    if rate is not None:
        speed = rate[at]
        fast = np.divide(targets[inside] - curve[before], speed, out=share * width,
                         where=speed > 0)
        share = np.divide(np.minimum(fast, width), width, out=share, where=width > 0)
    out[inside] = np.where(at == 0, times[0], times[before] + share * width)
    return out


class PoolRequests:
    """The requests routed to one pool that have not finished (``id`` is the workload index)."""

    def __init__(self, pool: FluidPool) -> None:
        self.pool = pool
        self.routed_tokens = 0.0
        self.data: dict[str, NDArray[Any]] = {
            name: np.zeros(0, np.int64 if name in ("id", "prompt", "output") else np.float64)
            for name in _FIELDS}

    def __len__(self) -> int:
        return len(self.data["id"])

    def add(self, ids: NDArray[np.int64], arrival_s: FloatArray, dispatch_s: FloatArray,
            prompt: NDArray[np.int64], output: NDArray[np.int64]) -> None:
        """Queue requests routed here, in dispatch order."""
        if len(ids) == 0:
            return
        targets = self.routed_tokens + np.cumsum(prompt, dtype=np.float64)
        self.routed_tokens = float(targets[-1])
        nan = np.full(len(ids), np.nan)
        new = {"id": ids, "arrival_s": arrival_s, "dispatch_s": dispatch_s, "prompt": prompt,
               "output": output, "target": targets, "first_s": nan, "start_s": nan,
               "step_target": nan}
        self.data = {name: np.concatenate([self.data[name], new[name]]) for name in _FIELDS}

    def resolve(self) -> tuple[dict[str, NDArray[Any]], FloatArray, FloatArray]:
        """Give first-token times to queued requests and finish times to decoding ones, up to
        the pool's last curve point; bring the fluid's state in line with theirs.

        Returns the finished requests (removed; with ``first_s``, ``start_s`` (first
        scheduled) and ``finish_s``), then the TTFT and the queue time, measured from
        dispatch as vLLM measures them, of the requests that got their first token now (s).
        """
        pool, data = self.pool, self.data
        n = pool.points
        times, prefilled = pool.times[:n], pool.prefilled[:n]
        iterations = pool.iterations[:n]
        end_s = times[-1]
        waiting = np.isnan(data["first_s"])
        ttft_s = queue_s = np.zeros(0)
        if waiting.any():
            prompt = data["prompt"][waiting].astype(np.float64)
            target = data["target"][waiting]
            dispatch = data["dispatch_s"][waiting]
            rate = pool.prefill_rate[:n]
            start = np.maximum(dispatch, crossing(prefilled, times, target - prompt, rate))
            point = np.clip(np.searchsorted(times, start, side="right"), 1, n - 1)
            own = prompt * pool.prefill_s + np.ceil(prompt / pool.batch_tokens) * (
                pool.decode_step_s[point])
            first = np.maximum(crossing(prefilled, times, target, rate), start + own)
            first = np.where(first <= end_s, first, np.nan)
            data["first_s"][waiting] = first
            data["start_s"][waiting] = np.where(np.isnan(first), np.nan, start)
            began = waiting.copy()
            began[waiting] = ~np.isnan(first)
            if began.any():
                ttft_s = data["first_s"][began] - data["dispatch_s"][began]
                queue_s = data["start_s"][began] - data["dispatch_s"][began]
                first_steps = np.interp(data["first_s"][began], times, iterations)
                data["step_target"][began] = first_steps + data["output"][began] - 1
        decoding = ~np.isnan(data["first_s"])
        finish = np.full(len(self), np.nan)
        if decoding.any():
            finish[decoding] = crossing(iterations, times, data["step_target"][decoding])
            finish[decoding] = np.maximum(finish[decoding], data["first_s"][decoding])
        done = finish <= end_s
        out = {name: values[done] for name, values in data.items()}
        out["finish_s"] = finish[done]
        keep = ~done
        self.data = {name: values[keep] for name, values in data.items()}
        self._sync(prefilled[-1], iterations[-1])
        return out, ttft_s, queue_s

    def take_all(self) -> NDArray[np.int64]:
        """Remove every unfinished request (its pod is gone); returns their ids."""
        ids = self.data["id"]
        self.data = {name: values[:0] for name, values in self.data.items()}
        self._sync(0.0, 0.0)
        return ids

    def _sync(self, prefilled: float, iterations: float) -> None:
        """Set the fluid's queue and decoding state from the requests' own."""
        data, pool = self.data, self.pool
        waiting = np.isnan(data["first_s"])
        prompt = data["prompt"][waiting].astype(np.float64)
        left = np.clip(data["target"][waiting] - prefilled, 0.0, prompt)
        pool.queue_requests = float(waiting.sum())
        pool.queue_tokens = float(left.sum())
        decoding = ~waiting
        pool.decoding = float(decoding.sum())
        grown = iterations - (data["step_target"][decoding] - data["output"][decoding] + 1)
        pool.context_tokens = float((data["prompt"][decoding] + np.maximum(grown, 0.0)).sum())

    def remaining_steps(self) -> FloatArray:
        """Engine steps each unfinished request still needs (queued ones: all its output)."""
        data = self.data
        iterations = self.pool.iterations[self.pool.points - 1]
        left = data["step_target"] - iterations
        return np.where(np.isnan(left), data["output"].astype(np.float64), np.maximum(left, 0.0))
