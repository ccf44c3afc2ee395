"""One pool's serving capacity as a fluid: token queues and decoding sequences, stepped in
sub-intervals of about a second.

The pool's ready (and draining) replicas are treated as identical engines sharing its work evenly
(what least-outstanding routing aims at). In every sub-step of ``dt`` seconds each replica runs
``k`` engine steps; a step gives one token to each of its ``d`` decoding sequences and a prefill
chunk of up to ``max_num_batched_tokens - d`` tokens to queued prompts, and lasts (the profile's
iteration-time model, :mod:`rlscale.sim.profile`)::

    t_step = overhead_s + prefill_s_per_token * chunk + decode_s_per_seq * d
             + context_s_per_token * (context tokens of the d sequences + d)

If the queue can fill every chunk, ``k = dt / t_step`` with full chunks; otherwise the queue is
prefilled whole and the rest of ``dt`` runs decode-only steps. Admission stops at
``max_num_seqs`` running sequences and at a full KV cache (``kv_capacity_tokens``). Sequences
finish at rate ``k / mean output tokens`` (memoryless between the step boundaries, where the
cluster resets the fluid from the per-request state, :mod:`rlscale.sim.fluid.requests`).

The pool keeps, per sub-step boundary, the cumulative prompt tokens prefilled (``prefilled``),
engine steps per replica (``iterations``) and the decode-only step time (``decode_step_s``):
and the pool's prefill rate when its chunks are full (``prefill_rate``, tokens/s): the curves
from which each request's first-token and finish times are read. Within a sub-step prefill runs
at that rate until the sub-step's tokens are done (work is not spread over the sub-step).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.fluid.kernels import Floats, advance_compiled, advance_loop, jit_enabled
from rlscale.sim.profile import PerformanceProfile

_INITIAL_POINTS = 4096


class FluidPool:
    """The aggregate state of one pool's engines. Tokens are counts, times seconds.

    Attributes:
        queue_tokens / queue_requests: prompt tokens still to prefill, and the requests they
            belong to (waiting or partly prefilled).
        decoding: sequences past their first token; context_tokens: the KV tokens they hold.
        points: number of valid entries in the curves ``times``, ``prefilled``,
            ``iterations``, ``decode_step_s``.
    """

    def __init__(self, profile: PerformanceProfile, mean_output_tokens: float) -> None:
        self.profile = profile
        self.overhead_s = profile.overhead_s
        self.prefill_s = profile.prefill_s_per_token
        self.decode_s = profile.decode_s_per_seq
        self.context_s = profile.context_s_per_token
        self.batch_tokens = float(profile.max_num_batched_tokens)
        self.max_num_seqs = float(profile.max_num_seqs)
        self.kv_capacity = float(profile.kv_capacity_tokens)
        self.mean_output = max(float(mean_output_tokens), 1.0)
        self._params = np.array([self.overhead_s, self.prefill_s, self.decode_s, self.context_s,
                                 self.batch_tokens, self.max_num_seqs, self.kv_capacity,
                                 self.mean_output])
        """The engines' numbers as :func:`~rlscale.sim.fluid.kernels.advance_loop` reads them."""
        self.queue_tokens = 0.0
        self.queue_requests = 0.0
        self.decoding = 0.0
        self.context_tokens = 0.0
        self.step_s = self.overhead_s
        """Mean engine step time of the last busy sub-step (s)."""
        self.times = np.zeros(_INITIAL_POINTS)
        self.prefilled = np.zeros(_INITIAL_POINTS)
        self.iterations = np.zeros(_INITIAL_POINTS)
        self.decode_step_s = np.full(_INITIAL_POINTS, self.overhead_s)
        self.prefill_rate = np.zeros(_INITIAL_POINTS)
        self.points = 1
        self._last = (0.0, 0.0, 0.0)  # time, prefilled, iterations at the last point (floats)
        self.kv_token_seconds = 0.0
        """Integral of the KV tokens held over time (token x s), summed over replicas."""
        self.prompt_tokens_total = 0.0
        self.generation_tokens_total = 0.0
        self.itl_values: list[float] = []
        self.itl_weights: list[float] = []

    def start(self, time_s: float) -> None:
        """Set the time of the curves' first point (before any :meth:`advance`)."""
        self.times[0] = time_s
        self._last = (time_s, 0.0, 0.0)

    def advance(self, ends_s: Floats, replicas: Floats, new_tokens: Floats,
                new_requests: Floats) -> None:
        """Run the pool's engines sub-step by sub-step: up to each ``ends_s[j]`` (s, after the
        last point) with ``replicas[j]`` engines, after ``new_requests[j]`` requests with
        ``new_tokens[j]`` prompt tokens joined its queue. Appends one curve point each."""
        count = len(ends_s)
        first = self.points
        while first + count > len(self.times):
            self._grow()
        state = [self.queue_tokens, self.queue_requests, self.decoding, self.context_tokens,
                 self.kv_token_seconds, self.step_s, self.prompt_tokens_total,
                 self.generation_tokens_total, *self._last]
        span = slice(first, first + count)
        if jit_enabled():
            gaps_s, gap_weights, array_state = np.empty(count), np.empty(count), np.array(state)
            ends, serving, tokens, requests = (
                np.ascontiguousarray(column, np.float64)
                for column in (ends_s, replicas, new_tokens, new_requests))
            gaps = advance_compiled(
                ends, serving, tokens, requests, self._params, array_state,
                self.prefilled[span], self.iterations[span], self.decode_step_s[span],
                self.prefill_rate[span], gaps_s, gap_weights)
            state = array_state.tolist()
            self.itl_values += gaps_s[:gaps].tolist()
            self.itl_weights += gap_weights[:gaps].tolist()
        else:
            prefilled, iterations = [0.0] * count, [0.0] * count
            step_s, rate = [0.0] * count, [0.0] * count
            values, weights = [0.0] * count, [0.0] * count
            plain_ends, plain_serving, plain_tokens, plain_requests = (
                column.tolist() if isinstance(column, np.ndarray) else column
                for column in (ends_s, replicas, new_tokens, new_requests))
            gaps = advance_loop(plain_ends, plain_serving, plain_tokens, plain_requests,
                                self._params.tolist(), state, prefilled, iterations, step_s,
                                rate, values, weights)
            self.prefilled[span], self.iterations[span] = prefilled, iterations
            self.decode_step_s[span], self.prefill_rate[span] = step_s, rate
            self.itl_values += values[:gaps]
            self.itl_weights += weights[:gaps]
        self.times[span] = ends_s
        self.points = first + count
        (self.queue_tokens, self.queue_requests, self.decoding, self.context_tokens,
         self.kv_token_seconds, self.step_s, self.prompt_tokens_total,
         self.generation_tokens_total) = state[:8]
        self._last = (state[8], state[9], state[10])

    def gauges(self, replicas: int) -> tuple[float, float, float]:
        """(running, waiting, KV-cache usage fraction) over ``replicas`` engines, as vLLM's
        gauges would sum (running, waiting) or average (usage) them."""
        if replicas <= 0:
            return 0.0, 0.0, 0.0
        mean_prompt = self.queue_tokens / self.queue_requests if self.queue_requests else 0.0
        per_replica_chunks = max(1.0, self.batch_tokens / mean_prompt) if mean_prompt else 1.0
        room = max(0.0, self.max_num_seqs * replicas - self.decoding)
        prefilling = min(self.queue_requests, per_replica_chunks * replicas, room)
        running = self.decoding + prefilling
        used = self.context_tokens + prefilling * mean_prompt
        block = self.profile.kv_block_size / 2.0
        usage = min(1.0, (used + running * block) / (self.kv_capacity * replicas))
        return running, self.queue_requests - prefilling, usage if running > 0 else 0.0

    def _grow(self) -> None:
        size = 2 * len(self.times)
        for name in ("times", "prefilled", "iterations", "decode_step_s", "prefill_rate"):
            old: NDArray[np.float64] = getattr(self, name)
            new = np.zeros(size)
            new[:len(old)] = old
            setattr(self, name, new)
