"""Each request's first-token and finish times, read off a fluid pool's curves.

Requests routed to a pool form one FIFO queue of prompt tokens: request ``i`` is prefilled when
the pool's cumulative prefilled tokens reach ``A_i`` (the prompt tokens routed to the pool up
to and including it), and no sooner than its own prompt takes on one engine (its chunks of
``max_num_batched_tokens``, each one engine step, from when the queue reaches it). It then
emits one token per engine step: it finishes when the pool's cumulative steps per replica have
grown by ``output_tokens - 1`` since its first token. All of it is vectorized over requests.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.fluid.pool import FluidPool

FloatArray = NDArray[np.float64]
COLUMNS = ("id", "arrival_s", "dispatch_s", "prompt", "output", "target", "first_s", "start_s",
           "step_target")
"""Columns of a pool's request rows: workload index, arrival and dispatch times (s), prompt and
output tokens, the pool's prefilled-token count that completes its prompt, first-token and
first-scheduled times (s), the pool's engine-step count at which it finishes."""
(_ID, _ARRIVAL, _DISPATCH, _PROMPT, _OUTPUT, _TARGET, _FIRST, _START,
 _STEP_TARGET) = range(len(COLUMNS))


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
    """The requests routed to one pool that have not finished, one row each (columns:
    ``COLUMNS``; ``id`` is the workload index; times in seconds, NaN until known)."""

    def __init__(self, pool: FluidPool) -> None:
        self.pool = pool
        self.routed_tokens = 0.0
        self.rows = np.zeros((0, len(COLUMNS)))

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, ids: NDArray[np.int64], arrival_s: FloatArray, dispatch_s: FloatArray,
            prompt: NDArray[np.int64], output: NDArray[np.int64]) -> None:
        """Queue requests routed here, in dispatch order."""
        if len(ids) == 0:
            return
        new = np.full((len(ids), len(COLUMNS)), np.nan)
        new[:, _ID], new[:, _ARRIVAL], new[:, _DISPATCH] = ids, arrival_s, dispatch_s
        new[:, _PROMPT], new[:, _OUTPUT] = prompt, output
        new[:, _TARGET] = self.routed_tokens + np.cumsum(prompt, dtype=np.float64)
        self.routed_tokens = float(new[-1, _TARGET])
        self.rows = np.concatenate([self.rows, new])

    def resolve(self) -> tuple[dict[str, FloatArray], FloatArray, FloatArray]:
        """Give first-token times to queued requests and finish times to decoding ones, up to
        the pool's last curve point; bring the fluid's state in line with theirs.

        Returns the finished requests (removed; columns by name plus ``finish_s``), then the
        TTFT and the queue time, measured from dispatch as vLLM measures them, of the
        requests that got their first token now (s).
        """
        pool, rows = self.pool, self.rows
        n = pool.points
        times, prefilled = pool.times[:n], pool.prefilled[:n]
        iterations = pool.iterations[:n]
        end_s = times[-1]
        waiting = np.flatnonzero(np.isnan(rows[:, _FIRST]))
        ttft_s = queue_s = np.zeros(0)
        if len(waiting):
            prompt, target = rows[waiting, _PROMPT], rows[waiting, _TARGET]
            dispatch = rows[waiting, _DISPATCH]
            rate = pool.prefill_rate[:n]
            start = np.maximum(dispatch, crossing(prefilled, times, target - prompt, rate))
            point = np.clip(np.searchsorted(times, start, side="right"), 1, n - 1)
            own = prompt * pool.prefill_s + np.ceil(prompt / pool.batch_tokens) * (
                pool.decode_step_s[point])
            first = np.maximum(crossing(prefilled, times, target, rate), start + own)
            now = first <= end_s
            began = waiting[now]
            if len(began):
                first, start, dispatch = first[now], start[now], dispatch[now]
                rows[began, _FIRST] = first
                rows[began, _START] = start
                rows[began, _STEP_TARGET] = (np.interp(first, times, iterations)
                                             + rows[began, _OUTPUT] - 1)
                ttft_s, queue_s = first - dispatch, start - dispatch
        finish = crossing(iterations, times, rows[:, _STEP_TARGET])
        finish = np.maximum(finish, rows[:, _FIRST])  # NaN (not started) stays NaN
        done = finish <= end_s
        finished = rows[done]
        out = {name: finished[:, i] for i, name in enumerate(COLUMNS)}
        out["finish_s"] = finish[done]
        self.rows = rows[~done]
        self._sync(prefilled[-1], iterations[-1])
        return out, ttft_s, queue_s

    def take_all(self) -> NDArray[np.int64]:
        """Remove every unfinished request (its pod is gone); returns their ids."""
        ids = self.rows[:, _ID].astype(np.int64)
        self.rows = self.rows[:0]
        self._sync(0.0, 0.0)
        return ids

    def _sync(self, prefilled: float, iterations: float) -> None:
        """Set the fluid's queue and decoding state from the requests' own."""
        rows, pool = self.rows, self.pool
        waiting = np.isnan(rows[:, _FIRST])
        queued, decoding = rows[waiting], rows[~waiting]
        pool.queue_requests = float(len(queued))
        pool.queue_tokens = float(np.clip(queued[:, _TARGET] - prefilled, 0.0,
                                          queued[:, _PROMPT]).sum())
        pool.decoding = float(len(decoding))
        grown = iterations - (decoding[:, _STEP_TARGET] - decoding[:, _OUTPUT] + 1)
        pool.context_tokens = float((decoding[:, _PROMPT] + np.maximum(grown, 0.0)).sum())

    def remaining_steps(self) -> FloatArray:
        """Engine steps each unfinished request still needs (queued ones: all its output)."""
        rows = self.rows
        left = rows[:, _STEP_TARGET] - self.pool.iterations[self.pool.points - 1]
        return np.where(np.isnan(left), rows[:, _OUTPUT], np.maximum(left, 0.0))
