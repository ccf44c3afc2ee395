"""The fast engine's inner loops, compiled by numba when it is installed (the ``fast`` extra).

Two loops run every sub-step or every step of every pool: the fluid's sub-step recurrence
(:func:`advance_loop`, :meth:`rlscale.sim.fluid.pool.FluidPool.advance`) and the reading of each
request's first-token and finish times off the pool's curves (:func:`resolve_rows`, the
compiled twin of :meth:`rlscale.sim.fluid.requests.PoolRequests.resolve`'s numpy code). Without
numba (or with ``RLSCALE_FLUID_JIT=0``, or :func:`set_jit` ``(False)``) the engine runs them as
plain Python and numpy, and gets the same numbers bit for bit: the compiled code does the same
IEEE operations in the same order, numpy's own algorithms included (its pairwise summation,
:func:`pairwise_sum`, and ``np.interp``'s, :func:`interp`). ``tests/test_fluid_jit.py`` checks
both paths against each other.

Compiled functions are cached on disk next to this module (numba's ``cache=True``): the first
process to use them pays the compile (about 10 s), later ones load them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, MutableSequence, Sequence
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

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

_njit: Callable[..., Any] | None
try:  # the optional "fast" extra
    from numba import njit as _njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    _njit = None

F = TypeVar("F", bound=Callable[..., Any])
Floats = Sequence[float] | NDArray[np.float64]
"""Numbers read by :func:`advance_loop`: lists (run as Python) or arrays (compiled)."""
OutFloats = MutableSequence[float] | NDArray[np.float64]
"""Numbers written by :func:`advance_loop`."""

JIT_AVAILABLE = _njit is not None
"""Whether numba is installed."""

_jit = JIT_AVAILABLE and os.environ.get("RLSCALE_FLUID_JIT", "1") != "0"


def jit_enabled() -> bool:
    """Whether the fast engine runs its compiled loops (numba installed and not switched
    off by ``RLSCALE_FLUID_JIT=0`` or :func:`set_jit`)."""
    return _jit


def set_jit(enabled: bool) -> None:
    """Run the compiled loops (``True``) or the plain ones (``False``); the numbers are the
    same. Raises RuntimeError when asked for compiled loops without numba installed."""
    global _jit
    if enabled and not JIT_AVAILABLE:
        raise RuntimeError("set_jit(True): numba is not installed (pip install 'rlscale[fast]')")
    _jit = enabled


def _compiled(function: F) -> F:
    """``function`` compiled by numba (IEEE division, no fast-math), or itself without it."""
    if _njit is None:  # pragma: no cover - exercised where numba is absent
        return function
    return cast(F, _njit(cache=True, error_model="numpy")(function))




def advance_loop(ends_s: Floats, replicas: Floats, new_tokens: Floats, new_requests: Floats,
                 params: Floats, state: OutFloats, prefilled_out: OutFloats,
                 iterations_out: OutFloats, step_out: OutFloats, rate_out: OutFloats,
                 itl_values: OutFloats, itl_weights: OutFloats) -> int:
    """The fluid's sub-steps (:meth:`~rlscale.sim.fluid.pool.FluidPool.advance`): for each
    ``j``, run the pool's engines up to ``ends_s[j]`` with ``replicas[j]`` of them after
    ``new_requests[j]`` requests of ``new_tokens[j]`` prompt tokens joined the queue.

    ``params``: overhead_s, prefill_s_per_token, decode_s_per_seq, context_s_per_token,
    max_num_batched_tokens, max_num_seqs, KV capacity (tokens), mean output tokens. ``state``
    (read and updated): queue tokens and requests, decoding sequences, their context tokens,
    KV token-seconds, the last busy step time (s), prompt and generation token totals, and
    the last point's time (s), prefilled tokens and engine steps. Writes each sub-step's
    cumulative prefilled tokens and steps, decode step time (s) and full-chunk prefill rate
    (tokens/s) at ``[j]`` of the ``*_out`` sequences and one inter-token gap (s) and its
    weight per sub-step with decoding sequences; returns how many gaps it wrote.
    """
    overhead, prefill_s, decode_s, context_s = params[0], params[1], params[2], params[3]
    batch, max_seqs, kv_capacity, mean_output = params[4], params[5], params[6], params[7]
    queue_tokens, queue_requests, decoding, context_tokens = state[0], state[1], state[2], (
        state[3])
    kv_token_seconds, step_s, prompt_total, generation_total = state[4], state[5], state[6], (
        state[7])
    last_s, prefilled, iterations = state[8], state[9], state[10]
    gaps = 0
    for j in range(len(ends_s)):
        end_s, serving = ends_s[j], replicas[j]
        dt = end_s - last_s
        queue_tokens += new_tokens[j]
        queue_requests += new_requests[j]
        step_out[j] = overhead
        rate_out[j] = 0.0
        if serving > 0 and dt > 0:
            d = decoding / serving
            c = context_tokens / serving
            decode_step = overhead + decode_s * d + context_s * (c + d)
            if queue_tokens > 0 and queue_requests > 0:
                mean_prompt = queue_tokens / queue_requests
                # room = min(queue per engine, free KV, free sequence slots x prompt);
                # below 0 it means none (the branch below only asks room <= 0).
                room = queue_tokens / serving
                limit = kv_capacity - c
                if limit < room:
                    room = limit
                limit = (max_seqs - d) * mean_prompt
                if limit < room:
                    room = limit
            else:
                mean_prompt = room = 0.0
            chunk = batch - d
            if room <= 0 or chunk <= 0:
                tokens, steps = 0.0, dt / decode_step
            else:
                full = dt / (decode_step + prefill_s * chunk)
                rate_out[j] = full * chunk * serving / dt
                if full * chunk <= room:
                    tokens, steps = full * chunk, full
                else:
                    tokens, steps = room, (dt - prefill_s * room) / decode_step
            total = tokens * serving
            started = min(queue_requests, total / mean_prompt) if total > 0 else 0.0
            queue_tokens -= total
            if queue_tokens < 0:
                queue_tokens = 0.0
            queue_requests -= started
            if queue_requests < 0:
                queue_requests = 0.0
            if decoding > 0:
                step_s = dt / steps
                itl_values[gaps] = step_s
                itl_weights[gaps] = decoding * steps
                gaps += 1
            generated = decoding * steps
            kept = math.exp(-steps / mean_output)
            context_tokens = (context_tokens + generated) * kept + started * mean_prompt
            decoding = decoding * kept + started
            kv_token_seconds += context_tokens * dt
            prompt_total += total
            generation_total += generated + started
            prefilled += total
            iterations += steps
            step_out[j] = decode_step
        prefilled_out[j] = prefilled
        iterations_out[j] = iterations
        last_s = end_s
    state[0], state[1], state[2], state[3] = queue_tokens, queue_requests, decoding, (
        context_tokens)
    state[4], state[5], state[6], state[7] = kv_token_seconds, step_s, prompt_total, (
        generation_total)
    state[8], state[9], state[10] = last_s, prefilled, iterations
    return gaps


advance_compiled = _compiled(advance_loop)
""":func:`advance_loop` compiled (numpy arrays in and out)."""


def _block_sum(values: NDArray[np.float64], start: int, count: int) -> float:
    """numpy's sum of at most 128 values: one by one below 8, else 8 accumulators."""
    if count < 8:
        total = 0.0
        for i in range(start, start + count):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    whole = count - count % 8
    while i < whole:
        at = start + i
        r0 += values[at]
        r1 += values[at + 1]
        r2 += values[at + 2]
        r3 += values[at + 3]
        r4 += values[at + 4]
        r5 += values[at + 5]
        r6 += values[at + 6]
        r7 += values[at + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < count:
        total += values[start + i]
        i += 1
    return float(total)


_block = _compiled(_block_sum)


def pairwise_sum(values: NDArray[np.float64], start: int, count: int) -> float:
    """``values[start:start + count].sum()`` as numpy computes it (pairwise summation: blocks
    of at most 128 as :func:`_block_sum`, longer runs as the sum of their two halves, the
    first a multiple of 8), the same bits. The halving runs on an explicit stack (numba's
    on-disk cache does not keep recursive functions)."""
    if count <= 128:
        return float(_block(values, start, count))
    starts, counts = np.empty(64, np.int64), np.empty(64, np.int64)
    phases, lefts = np.zeros(64, np.int64), np.zeros(64)
    starts[0], counts[0], top, result = start, count, 0, 0.0
    while top >= 0:
        first, size = starts[top], counts[top]
        if size <= 128:
            result = _block(values, first, size)
            top -= 1
            continue
        half = size // 2
        half -= half % 8
        if phases[top] == 0:  # the left half first
            phases[top] = 1
            top += 1
            starts[top], counts[top], phases[top] = first, half, 0
        elif phases[top] == 1:  # then the right half
            lefts[top], phases[top] = result, 2
            top += 1
            starts[top], counts[top], phases[top] = first + half, size - half, 0
        else:
            result = lefts[top] + result
            top -= 1
    return float(result)


pairwise_sum_compiled = _compiled(pairwise_sum)


def interp(x: float, xp: NDArray[np.float64], fp: NDArray[np.float64], count: int) -> float:
    """``np.interp(x, xp[:count], fp[:count])`` for one ``x`` (not NaN), as numpy computes it
    (its interval search, its slope, its fallbacks when that gives NaN), the same bits."""
    if x > xp[count - 1]:
        return float(fp[count - 1])
    if x < xp[0]:
        return float(fp[0])
    low, high = 0, count
    while high - low > 1:  # the last j with xp[j] <= x
        middle = (low + high) // 2
        if xp[middle] <= x:
            low = middle
        else:
            high = middle
    j = low
    if j == count - 1 or xp[j] == x:
        return float(fp[j])
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    value = slope * (x - xp[j]) + fp[j]
    if math.isnan(value):
        value = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(value) and fp[j] == fp[j + 1]:
            value = fp[j]
    return float(value)


_interp = _compiled(interp)


def _search_left(curve: NDArray[np.float64], count: int, target: float) -> int:
    """``np.searchsorted(curve[:count], target, side="left")``."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if curve[middle] < target:
            low = middle + 1
        else:
            high = middle
    return low


def _search_right(curve: NDArray[np.float64], count: int, target: float) -> int:
    """``np.searchsorted(curve[:count], target, side="right")``."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if curve[middle] <= target:
            low = middle + 1
        else:
            high = middle
    return low


_left = _compiled(_search_left)
_right = _compiled(_search_right)


def _reached_one(curve: NDArray[np.float64], times: NDArray[np.float64],
                 rate: NDArray[np.float64], use_rate: bool, count: int, target: float) -> float:
    """:func:`~rlscale.sim.fluid.requests.reached` of one target."""
    at = _left(curve, count, target)
    if at == 0:
        return float(times[0])
    start = curve[at - 1]
    grown = target - start
    then = times[at - 1]
    width = times[at] - then
    share = grown / (curve[at] - start)
    if use_rate:
        speed = rate[at]
        share = grown / speed if speed > 0 else share * width
        share = (share if share < width else width) / width
    return float(then + share * width)


_reached = _compiled(_reached_one)


def resolve_rows(queued: NDArray[np.float64], decoding: NDArray[np.float64],
                 times: NDArray[np.float64], prefilled: NDArray[np.float64],
                 iterations: NDArray[np.float64], decode_step_s: NDArray[np.float64],
                 prefill_rate: NDArray[np.float64], count: int, prefill_s: float,
                 batch_tokens: float) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                               NDArray[np.float64], NDArray[np.float64],
                                               NDArray[np.float64], NDArray[np.float64],
                                               float]:
    """One pool's resolution (the numpy code of
    :meth:`~rlscale.sim.fluid.requests.PoolRequests.resolve`) as loops over its rows: returns
    the rows still queued and still decoding, the finished rows and their finish times (s),
    the TTFT and queue time (s, from dispatch) of the rows that got their first token, and
    the context tokens the decoding rows hold. ``count``: the curves' valid points."""
    columns = queued.shape[1]
    end_s = times[count - 1]
    prefilled_end, iterations_end = prefilled[count - 1], iterations[count - 1]
    reach = _right(queued[:, TARGET], len(queued), prefilled_end)
    now = np.zeros(reach, np.bool_)
    first = np.empty(reach)
    start = np.empty(reach)
    began = 0
    for i in range(reach):
        row = queued[i]
        prompt, target = row[PROMPT], row[TARGET]
        edge = _reached(prefilled, times, prefill_rate, True, count, target - prompt)
        begin = row[DISPATCH] if row[DISPATCH] > edge else edge
        point = _right(times, count, begin)
        point = min(max(point, 1), count - 1)
        own = prompt * prefill_s + np.ceil(prompt / batch_tokens) * decode_step_s[point]
        done_prefill = _reached(prefilled, times, prefill_rate, True, count, target)
        arrive = begin + own
        first[i] = done_prefill if done_prefill > arrive else arrive
        start[i] = begin
        now[i] = first[i] <= end_s
        began += now[i]
    ttft = np.empty(began)
    queue_s = np.empty(began)
    left = np.empty((len(queued) - began, columns))
    grown_rows = np.empty((len(decoding) + began, columns))
    grown_rows[:len(decoding)] = decoding
    k = kept = 0
    for i in range(reach):
        if now[i]:
            row = grown_rows[len(decoding) + k]
            row[:] = queued[i]
            row[FIRST] = first[i]
            row[START] = start[i]
            row[STEP_TARGET] = _interp(first[i], times, iterations, count) + row[OUTPUT] - 1
            ttft[k] = first[i] - row[DISPATCH]
            queue_s[k] = start[i] - row[DISPATCH]
            k += 1
        else:
            left[kept] = queued[i]
            kept += 1
    left[kept:] = queued[reach:]
    due = 0
    for i in range(len(grown_rows)):
        if grown_rows[i, STEP_TARGET] <= iterations_end:
            due += 1
    finish = np.empty(due)
    is_done = np.zeros(len(grown_rows), np.bool_)
    done = 0
    d = 0
    for i in range(len(grown_rows)):
        row = grown_rows[i]
        if row[STEP_TARGET] <= iterations_end:
            at = _reached(iterations, times, prefill_rate, False, count, row[STEP_TARGET])
            finish[d] = at if at > row[FIRST] else row[FIRST]
            if finish[d] <= end_s:
                is_done[i] = True
                finish[done] = finish[d]
                done += 1
            d += 1
    finished = np.empty((done, columns))
    still = np.empty((len(grown_rows) - done, columns))
    context = np.empty(len(grown_rows) - done)
    f = s = 0
    for i in range(len(grown_rows)):
        row = grown_rows[i]
        if is_done[i]:
            finished[f] = row
            f += 1
        else:
            still[s] = row
            held = iterations_end - (row[STEP_TARGET] - row[OUTPUT] + 1)
            context[s] = row[PROMPT] + (held if held > 0.0 else 0.0)
            s += 1
    return (left, still, finished, finish[:done].copy(), ttft, queue_s,
            pairwise_sum_compiled(context, 0, len(context)))


resolve_compiled = _compiled(resolve_rows)
""":func:`resolve_rows` compiled."""


def observe_histograms(totals: NDArray[np.float64], edges: NDArray[np.float64],
                       edge_bounds: NDArray[np.int64], first_bucket: NDArray[np.int64],
                       sum_index: NDArray[np.int64], ttft_s: NDArray[np.float64],
                       queue_s: NDArray[np.float64], e2e_s: NDArray[np.float64],
                       itl_s: NDArray[np.float64], itl_weights: NDArray[np.float64]) -> None:
    """Add one step's observations to a pool's counter vector ``totals`` (the layout of
    :mod:`rlscale.sim.fluid.metrics`): histogram ``h`` (TTFT, queue, end-to-end, inter-token)
    has the bucket edges ``edges[edge_bounds[h]:edge_bounds[h + 1]]`` and its buckets from
    ``totals[first_bucket[h]]``, its sum at ``totals[sum_index[h]]``. As numpy does it there:
    each bucket grows by its count (the gaps' weights summed one by one for inter-token), each
    sum by its values' pairwise sum; the inter-token sum (a dot product) is left to the
    caller."""
    for h in range(4):
        values = ttft_s if h == 0 else queue_s if h == 1 else e2e_s if h == 2 else itl_s
        if not len(values):
            continue
        low, high = edge_bounds[h], edge_bounds[h + 1]
        counts = np.zeros(high - low + 1)
        for i in range(len(values)):
            bucket = _left(edges[low:high], high - low, values[i])
            counts[bucket] += itl_weights[i] if h == 3 else 1.0
        for bucket in range(len(counts)):
            totals[first_bucket[h] + bucket] += counts[bucket]
        if h < 3:
            totals[sum_index[h]] += pairwise_sum_compiled(values, 0, len(values))


observe_compiled = _compiled(observe_histograms)
""":func:`observe_histograms` compiled."""


def route_rows(ids: NDArray[np.int64], dispatch_s: NDArray[np.float64],
               pool: NDArray[np.int64], prompt: NDArray[np.int64], output: NDArray[np.int64],
               arrival_s: NDArray[np.float64], max_len: NDArray[np.int64],
               routed_tokens: NDArray[np.float64], start_s: float, substep_s: float,
               count: int) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                    NDArray[np.float64], NDArray[np.int64]]:
    """Requests dispatched to pools (:meth:`~rlscale.sim.fluid.cluster.FluidCluster._dispatch`
    after the router's choice; none too long for its pool): workload indices ``ids``, dispatch
    times (s), chosen ``pool`` and prompt tokens, one each; the workload's output tokens and
    arrival times (s) by workload index; each pool's ``max_model_len``.

    Returns the prompt tokens and requests routed to each pool in each of the ``count``
    sub-steps of ``substep_s`` from ``start_s`` (pools x sub-steps), the requests' rows
    (columns ``COLUMNS``) grouped by pool in dispatch order, their ``target`` counted on from
    each pool's ``routed_tokens``, and how many rows each pool got: what the numpy path makes
    with ``bincount``, a stable sort and :meth:`PoolRequests.add`, the same numbers."""
    npools = len(routed_tokens)
    tokens = np.zeros((npools, count))
    requests = np.zeros((npools, count))
    per_pool = np.zeros(npools, np.int64)
    for i in range(len(ids)):
        sub = int((dispatch_s[i] - start_s) / substep_s)
        sub = min(max(sub, 0), count - 1)
        tokens[pool[i], sub] += float(prompt[i])
        requests[pool[i], sub] += 1.0
        per_pool[pool[i]] += 1
    at = np.zeros(npools, np.int64)
    for p in range(1, npools):
        at[p] = at[p - 1] + per_pool[p - 1]
    rows = np.full((len(ids), WIDTH), np.nan)
    grown = np.zeros(npools)
    for i in range(len(ids)):
        p = pool[i]
        row = rows[at[p]]
        at[p] += 1
        tokens_in = prompt[i]
        grown[p] += float(tokens_in)
        row[ID] = float(ids[i])
        row[ARRIVAL] = arrival_s[ids[i]]
        row[DISPATCH] = dispatch_s[i]
        row[PROMPT] = float(tokens_in)
        row[OUTPUT] = float(min(output[ids[i]], max_len[p] - tokens_in))
        row[TARGET] = routed_tokens[p] + grown[p]
    return tokens, requests, rows, per_pool


route_compiled = _compiled(route_rows)
""":func:`route_rows` compiled."""
