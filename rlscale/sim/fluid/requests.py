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

from rlscale.sim.fluid.kernels import jit_enabled, resolve_compiled
from rlscale.sim.fluid.pool import FluidPool
from rlscale.sim.fluid.rows import (
    ARRIVAL,
    DISPATCH,
    FIRST,
    ID,
    OUTPUT,
    PROMPT,
    START,
    STEP_TARGET,
    TARGET,
    WIDTH,
)

FloatArray = NDArray[np.float64]


def crossing(curve: FloatArray, times: FloatArray, targets: FloatArray,
             rate: FloatArray | None = None) -> FloatArray:
    """First time each non-decreasing ``curve`` (values at ``times``) reaches each target;
    ``inf`` where it does not within the curve, its first time where it starts above.

    Between two points the curve is linear, or, with ``rate`` (per unit of time, for the
    segment ending at each point), grows at that rate from the segment's start until it
    reaches the segment's end value."""
    out = np.full(len(targets), np.inf)
    inside = targets <= curve[-1]
    out[inside] = reached(curve, times, targets[inside], rate)
    return out


def reached(curve: FloatArray, times: FloatArray, targets: FloatArray,
            rate: FloatArray | None = None) -> FloatArray:
    """:func:`crossing` for targets the curve reaches (each ``<= curve[-1]``). Points are at
    increasing times, so a segment has no width only before the first point (``at == 0``,
    where the answer is the first time and the NaN of 0/0 is not used)."""
    at = curve.searchsorted(targets, side="left")
    before = at - 1
    np.maximum(before, 0, out=before)
    start = curve[before]
    grown = targets - start
    then = times[before]
    width = times[at] - then
    with np.errstate(divide="ignore", invalid="ignore"):
        share = grown / (curve[at] - start)
        if rate is not None:
            speed = rate[at]
            share = np.where(speed > 0, grown / speed, share * width)
            share = np.minimum(share, width) / width
        return np.where(at == 0, times[0], then + share * width)


class PoolRequests:
    """The requests routed to one pool that have not finished, one row each (columns:
    ``COLUMNS``; ``id`` is the workload index; times in seconds, NaN until known).

    Rows waiting for their first token (:attr:`queued`) stay in dispatch order, so their
    ``target`` grows down the array and only its head can be reached by the pool's prefill:
    each :meth:`resolve` looks at that head and at the decoding rows (:attr:`decoding`), never
    at the whole queue, and costs the same in overload as in a quiet pool.
    """

    def __init__(self, pool: FluidPool) -> None:
        self.pool = pool
        self.routed_tokens = 0.0
        self.queued = np.zeros((0, WIDTH))
        self.decoding = np.zeros((0, WIDTH))

    def __len__(self) -> int:
        return len(self.queued) + len(self.decoding)

    def add(self, ids: NDArray[np.int64], arrival_s: FloatArray, dispatch_s: FloatArray,
            prompt: NDArray[np.int64], output: NDArray[np.int64]) -> None:
        """Queue requests routed here, in dispatch order."""
        if len(ids) == 0:
            return
        new = np.full((len(ids), WIDTH), np.nan)
        new[:, ID], new[:, ARRIVAL], new[:, DISPATCH] = ids, arrival_s, dispatch_s
        new[:, PROMPT], new[:, OUTPUT] = prompt, output
        new[:, TARGET] = self.routed_tokens + np.cumsum(prompt, dtype=np.float64)
        self.add_rows(new)

    def add_rows(self, new: FloatArray) -> None:
        """Queue requests routed here as made rows (columns ``COLUMNS``, at least one, in
        dispatch order, ``target`` counted on from :attr:`routed_tokens`)."""
        self.routed_tokens = float(new[-1, TARGET])
        self.queued = np.concatenate([self.queued, new]) if len(self.queued) else new

    def resolve(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Give first-token times to queued requests and finish times to decoding ones, up to
        the pool's last curve point; bring the fluid's state in line with theirs.

        Returns the finished requests' rows (removed; columns ``COLUMNS``) and their finish
        times, then the TTFT and the queue time, measured from dispatch as vLLM measures
        them, of the requests that got their first token now (s).
        """
        pool = self.pool
        n = pool.points
        if jit_enabled():
            (self.queued, self.decoding, finished, finish_s, ttft_s, queue_s,
             context_tokens) = resolve_compiled(
                self.queued, self.decoding, pool.times, pool.prefilled, pool.iterations,
                pool.decode_step_s, pool.prefill_rate, n, pool.prefill_s, pool.batch_tokens)
            self._sync(float(pool.prefilled[n - 1]), context_tokens)
            return finished, finish_s, ttft_s, queue_s
        times, prefilled = pool.times[:n], pool.prefilled[:n]
        iterations = pool.iterations[:n]
        end_s = float(times[-1])
        ttft_s = queue_s = _EMPTY
        queued = self.queued
        # Only rows whose whole prompt the pool has prefilled can have a first token.
        reach = int(np.searchsorted(queued[:, TARGET], prefilled[-1], side="right"))
        if reach:
            head = queued[:reach]
            prompt, target, dispatch = head[:, PROMPT], head[:, TARGET], head[:, DISPATCH]
            # When the prefill reaches each prompt's start and its end, in one pass.
            edges = reached(prefilled, times, np.concatenate([target - prompt, target]),
                            pool.prefill_rate[:n])
            start = np.maximum(dispatch, edges[:reach])
            point = times.searchsorted(start, side="right")
            np.minimum(np.maximum(point, 1, out=point), n - 1, out=point)
            own = prompt * pool.prefill_s + np.ceil(prompt / pool.batch_tokens) * (
                pool.decode_step_s[point])
            first = np.maximum(edges[reach:], start + own)
            now = first <= end_s
            if now.all():
                began, self.queued = head, queued[reach:]
            else:
                began = head[now]
                self.queued = np.concatenate([head[~now], queued[reach:]])
            if len(began):
                first, start, dispatch = first[now], start[now], dispatch[now]
                began[:, FIRST] = first
                began[:, START] = start
                began[:, STEP_TARGET] = (np.interp(first, times, iterations)
                                          + began[:, OUTPUT] - 1)
                ttft_s, queue_s = first - dispatch, start - dispatch
                self.decoding = (np.concatenate([self.decoding, began]) if len(self.decoding)
                                 else began)
        decoding = self.decoding
        # Only rows whose step target the pool's steps have reached can have finished.
        is_due = decoding[:, STEP_TARGET] <= iterations[-1]
        due = np.flatnonzero(is_due)
        finished, finish_s = decoding[:0], _EMPTY
        if len(due):
            rows = decoding[due]
            finish = np.maximum(reached(iterations, times, rows[:, STEP_TARGET]),
                                rows[:, FIRST])
            done = finish <= end_s
            if done.all():  # (they all have, but for rounding)
                finished, finish_s = rows, finish
                self.decoding = decoding[~is_due]
            elif done.any():
                finished, finish_s = rows[done], finish[done]
                keep = np.ones(len(decoding), bool)
                keep[due[done]] = False
                self.decoding = decoding[keep]
        self._sync(float(prefilled[-1]), _context_tokens(self.decoding, float(iterations[-1])))
        return finished, finish_s, ttft_s, queue_s

    def take_all(self) -> NDArray[np.int64]:
        """Remove every unfinished request (its pod is gone); returns their ids."""
        ids = np.concatenate([self.decoding[:, ID], self.queued[:, ID]]).astype(np.int64)
        self.queued, self.decoding = self.queued[:0], self.decoding[:0]
        # The next request's prompt starts where the prefill is, not after the dropped ones.
        self.routed_tokens = float(self.pool.prefilled[self.pool.points - 1])
        self._sync(self.routed_tokens, 0.0)
        return ids

    def _sync(self, prefilled: float, context_tokens: float) -> None:
        """Set the fluid's queue and decoding state from the requests' own, the pool having
        prefilled ``prefilled`` tokens in all and its decoding rows holding
        ``context_tokens``."""
        queued, decoding, pool = self.queued, self.decoding, self.pool
        pool.queue_requests = float(len(queued))
        # Queued rows the prefill has not passed follow each other in token order up to the
        # last routed token: what is left of them is the routed tokens beyond the prefill
        # (or beyond the first such row's start, if the prefill has not reached it).
        beyond = int(np.searchsorted(queued[:, TARGET], prefilled, side="right"))
        pool.queue_tokens = 0.0 if beyond == len(queued) else self.routed_tokens - max(
            prefilled, float(queued[beyond, TARGET] - queued[beyond, PROMPT]))
        pool.decoding = float(len(decoding))
        pool.context_tokens = context_tokens

    def remaining_steps(self) -> FloatArray:
        """Engine steps each unfinished request still needs (queued ones: all its output)."""
        left = self.decoding[:, STEP_TARGET] - self.pool.iterations[self.pool.points - 1]
        return np.concatenate([np.maximum(left, 0.0), self.queued[:, OUTPUT]])


def _context_tokens(decoding: FloatArray, iterations: float) -> float:
    """KV tokens the ``decoding`` rows hold when the pool has run ``iterations`` engine
    steps: each one's prompt and the tokens it generated so far."""
    if not len(decoding):
        return 0.0
    grown = iterations - (decoding[:, STEP_TARGET] - decoding[:, OUTPUT] + 1)
    return float((decoding[:, PROMPT] + np.maximum(grown, 0.0)).sum())


_EMPTY = np.zeros(0)
