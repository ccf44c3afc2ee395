"""The vLLM engine of one replica: continuous batching, chunked prefill, a KV cache, preemption.

The engine runs *segments*: runs of engine steps (iterations) whose batch composition is fixed.
Between two events that change the batch (a request finishing its prompt or its output, the KV
cache filling up, a new request that can join) every step processes the same decoding sequences
and the same prefill chunk, and the step duration grows linearly as the decoding sequences' context
grows. A whole segment is therefore advanced in O(1) with closed forms instead of token by token.

Scheduling follows vLLM's scheduler with chunked prefill (V0 ``--enable-chunked-prefill``, the
V1 default): each step first gives one token to every decoding sequence, then prefill chunks to
running requests still in their prompt (oldest first), then admits waiting requests FCFS while the
token budget ``max_num_batched_tokens``, ``max_num_seqs`` and the KV cache allow. A request is
admitted only if the KV cache can hold its whole prompt above a 1% watermark (vLLM's block
manager ``can_allocate``); its prompt's KV is reserved on admission. When a decode step needs a
slot and the cache is full, the newest running request is preempted and later recomputed from
scratch (prompt plus the tokens it had generated), vLLM's default ``PreemptionMode.RECOMPUTE``.
With chunked prefill off, steps are either prefill-only (whole prompts, prefills first, as vLLM
V0's default scheduler) or decode-only.

KV usage is accounted in tokens; vLLM allocates blocks, so a request holds up to one partly filled
block. The exported ``kv_cache_usage_perc`` adds the expected half block per running request.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from rlscale.metrics.vllm import E2E_BUCKETS_S, ITL_BUCKETS_S, QUEUE_BUCKETS_S, TTFT_BUCKETS_S
from rlscale.sim.histogram import Histogram
from rlscale.sim.profile import PerformanceProfile
from rlscale.sim.request import Request, RequestState

FinishCallback = Callable[[Request, float], None]

ADMISSION_WATERMARK = 0.01
"""Fraction of KV blocks kept free when admitting a request (vLLM's ``watermark`` default)."""


class ReplicaEngine:
    """One vLLM engine. Times are seconds of simulated time, sizes are tokens.

    ``step_by_step=True`` ends every segment after one step, as vLLM's own engine loop does:
    slower, and the reference the closed-form segments are tested and benchmarked against.

    The owner (a pod in the cluster) calls :meth:`enqueue` when a request is routed here and
    :meth:`on_event` at :attr:`next_event_s`; between events :meth:`sync` brings counters and
    gauges up to a given time without changing what happens next.
    """

    def __init__(self, profile: PerformanceProfile, start_s: float,
                 on_finish: FinishCallback, *, step_by_step: bool = False) -> None:
        self.profile = profile
        self.step_by_step = step_by_step
        self.on_finish = on_finish
        self.max_num_seqs = profile.max_num_seqs
        self.max_num_batched_tokens = profile.max_num_batched_tokens
        self.chunked_prefill = profile.enable_chunked_prefill
        self.kv_capacity = profile.kv_capacity_tokens
        self.block_size = profile.kv_block_size
        self.watermark = int(ADMISSION_WATERMARK * self.kv_capacity)
        self._overhead_s = profile.overhead_s
        self._prefill_s = profile.prefill_s_per_token
        self._decode_s = profile.decode_s_per_seq
        self._context_s = profile.context_s_per_token

        self.waiting: deque[Request] = deque()
        self.running: dict[Request, None] = {}  # admission order: newest last
        self.prefilling: list[Request] = []
        self._decode_heap: list[tuple[int, int, int, Request]] = []
        self.n_decode = 0
        self.ctx_decode = 0
        self.kv_used = 0
        self.step = 0

        # The current segment: ``seg_steps`` steps left, the next one starting at ``seg_start_s``
        # and lasting ``seg_step_s``; each later step is ``seg_growth_s`` longer.
        self.seg_start_s = start_s
        self.seg_steps = 0
        self.seg_step_s = 0.0
        self.seg_growth_s = 0.0
        self.seg_decodes = 0
        self.seg_chunks: list[tuple[Request, int]] = []
        self.seg_prefill_tokens = 0
        self.waking = False  # idle with work queued: plans at seg_start_s, after same-time arrivals
        self.step_log: list[tuple[float, float, int, int]] | None = None
        """If a list, each applied run of steps appends (first step s, growth s, steps, decodes)."""

        # vLLM's metrics of this engine (counters are cumulative totals).
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.preemptions_total = 0
        self.success_total = 0
        self.steps_total = 0
        self.hist_ttft = Histogram(TTFT_BUCKETS_S)
        self.hist_itl = Histogram(ITL_BUCKETS_S)
        self.hist_e2e = Histogram(E2E_BUCKETS_S)
        self.hist_queue = Histogram(QUEUE_BUCKETS_S)
        self.kv_token_seconds = 0.0  # integral of kv_used over time, token * s
        self.busy_s = 0.0

    # ------------------------------------------------------------------ public interface
    @property
    def next_event_s(self) -> float:
        """Simulated time at which the current segment ends (``inf`` when idle)."""
        if self.seg_steps == 0:
            return self.seg_start_s if self.waking else math.inf
        return self.seg_start_s + self._elapsed(self.seg_steps)

    @property
    def outstanding(self) -> int:
        """Requests queued or running on this engine (what least-outstanding routing counts)."""
        return len(self.waiting) + len(self.running)

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of KV blocks in use, in [0, 1], as ``vllm:kv_cache_usage_perc`` reports."""
        if not self.running:
            return 0.0
        blocks_tokens = self.kv_used + len(self.running) * self.block_size / 2
        return min(1.0, blocks_tokens / self.kv_capacity)

    def enqueue(self, request: Request, now_s: float) -> bool:
        """Accept a routed request at ``now_s``; True if :attr:`next_event_s` changed."""
        request.state = RequestState.WAITING
        request.dispatch_s = now_s
        if self.seg_steps == 0:
            # An idle engine starts its next step now, after every request arriving now is queued
            # (vLLM's engine loop picks up all requests that arrived while it was idle).
            self.waiting.append(request)
            if self.waking:
                return False
            self.waking = True
            self.seg_start_s = now_s
            return True
        could_join = not self.waiting and len(self.running) < self.max_num_seqs and (
            not self.chunked_prefill
            or self.seg_decodes + self.seg_prefill_tokens < self.max_num_batched_tokens
        )
        self.waiting.append(request)
        if not could_join or self.seg_steps == 1:
            return False
        # The request joins the batch at the end of the step now in progress.
        self.sync(now_s)
        if self.seg_steps > 1:
            self.seg_steps = 1
            return True
        return False

    def sync(self, now_s: float) -> None:
        """Apply the steps of the current segment that have completed by ``now_s``.

        The segment's last step is left to :meth:`on_event`, which handles what it triggers.
        """
        if self.seg_steps <= 1:
            return
        done = self._steps_within(now_s - self.seg_start_s)
        if done > 0:
            self._apply(min(done, self.seg_steps - 1))

    def on_event(self, now_s: float) -> None:
        """Finish the current segment (its end is ``now_s``) and plan the next one."""
        if self.waking:
            self.waking = False
            self.seg_start_s = now_s
            self._plan()
            return
        if self.seg_steps == 0:
            return
        self._apply(self.seg_steps)
        self.seg_start_s = now_s
        self._finish_segment(now_s)
        self._plan()

    def abort_all(self) -> list[Request]:
        """Remove and return every request (the pod crashed); the engine becomes idle."""
        aborted = [*self.running, *self.waiting]
        for request in aborted:
            if request.state == RequestState.DECODE:
                request.generated += self.step - request.decode_entry_step
        self.running.clear()
        self.waiting.clear()
        self.prefilling.clear()
        self._decode_heap.clear()
        self.n_decode = self.ctx_decode = self.kv_used = 0
        self.seg_steps = 0
        self.seg_chunks = []
        self.waking = False
        return aborted

    # ------------------------------------------------------------------ segment arithmetic
    def _elapsed(self, steps: int) -> float:
        """Duration of the next ``steps`` steps of the current segment, seconds."""
        return steps * self.seg_step_s + self.seg_growth_s * steps * (steps - 1) / 2

    def _steps_within(self, dt_s: float) -> int:
        """Number of whole steps of the current segment that fit in ``dt_s`` seconds."""
        if dt_s <= 0:
            return 0
        s, g = self.seg_step_s, self.seg_growth_s
        if g <= 0:
            steps = int(dt_s / s)
        else:
            half = s - g / 2
            steps = int((-half + math.sqrt(half * half + 2 * g * dt_s)) / g)
        while steps > 0 and self._elapsed(steps) > dt_s:
            steps -= 1
        while self._elapsed(steps + 1) <= dt_s:
            steps += 1
        return steps

    def _apply(self, steps: int) -> None:
        """Advance the current segment by ``steps`` steps (none of them ends the segment
        except possibly the last, whose consequences :meth:`_finish_segment` handles)."""
        elapsed = self._elapsed(steps)
        n = self.seg_decodes
        if self.step_log is not None:
            self.step_log.append((self.seg_step_s, self.seg_growth_s, steps, n))
        self.kv_token_seconds += elapsed * (self.kv_used + n * steps / 2)
        self.busy_s += elapsed
        self.steps_total += steps
        if n:
            self.step += steps
            self.ctx_decode += n * steps
            self.kv_used += n * steps
            self.generation_tokens_total += n * steps
            self.hist_itl.observe(elapsed / steps, n * steps)
        for request, chunk in self.seg_chunks:
            request.prefilled += chunk * steps
        self.prompt_tokens_total += self.seg_prefill_tokens * steps
        self.seg_start_s += elapsed
        self.seg_step_s += self.seg_growth_s * steps
        self.seg_steps -= steps

    # ------------------------------------------------------------------ scheduling
    def _finish_segment(self, now_s: float) -> None:
        """Handle prompts that completed and sequences that reached their output length."""
        for request, _chunk in self.seg_chunks:
            done = request.prefilled >= request.prefill_target
            if done and request.state == RequestState.PREFILL:
                self.prefilling.remove(request)
                self._first_token(request, now_s)
        self.seg_chunks = []
        heap = self._decode_heap
        while heap and heap[0][0] <= self.step:
            _finish_step, _id, entry_step, request = heapq.heappop(heap)
            if request.state != RequestState.DECODE or request.decode_entry_step != entry_step:
                continue  # preempted since it was pushed
            held = request.prefill_target + self.step - entry_step
            self.n_decode -= 1
            self.ctx_decode -= held
            request.generated = request.output_tokens
            self._finish(request, held, now_s)

    def _first_token(self, request: Request, now_s: float) -> None:
        """A prompt (or a recompute) is fully prefilled: the step emitted its next token."""
        self.generation_tokens_total += 1
        request.generated += 1
        if request.generated == 1:
            request.first_token_s = now_s
            self.hist_ttft.observe(now_s - request.dispatch_s)
        if request.generated >= request.output_tokens:
            self._finish(request, request.prefill_target, now_s)
            return
        request.state = RequestState.DECODE
        request.decode_entry_step = self.step
        finish_step = self.step + request.output_tokens - request.generated
        heapq.heappush(self._decode_heap, (finish_step, request.id, self.step, request))
        self.n_decode += 1
        self.ctx_decode += request.prefill_target

    def _finish(self, request: Request, held_tokens: int, now_s: float) -> None:
        del self.running[request]
        self.kv_used -= held_tokens
        request.state = RequestState.FINISHED
        request.finish_s = now_s
        self.success_total += 1
        self.hist_e2e.observe(now_s - request.dispatch_s)
        self.on_finish(request, now_s)

    def _preempt_newest(self) -> None:
        """Preempt the most recently admitted running request (recompute mode)."""
        request = next(reversed(self.running))
        del self.running[request]
        if request.state == RequestState.DECODE:
            progressed = self.step - request.decode_entry_step
            held = request.prefill_target + progressed
            request.generated += progressed
            self.n_decode -= 1
            self.ctx_decode -= held
        else:
            held = request.prefill_target
            self.prefilling.remove(request)
        self.kv_used -= held
        request.prefill_target = request.prompt_tokens + request.generated
        request.prefilled = 0
        request.preemptions += 1
        request.state = RequestState.WAITING
        self.preemptions_total += 1
        self.waiting.appendleft(request)

    def _admit(self, request: Request) -> None:
        self.waiting.popleft()
        self.running[request] = None
        self.prefilling.append(request)
        self.kv_used += request.prefill_target
        request.state = RequestState.PREFILL
        if math.isnan(request.first_scheduled_s):
            request.first_scheduled_s = self.seg_start_s
            self.hist_queue.observe(self.seg_start_s - request.dispatch_s)

    def _can_admit(self, request: Request, reserved_tokens: int) -> bool:
        free = self.kv_capacity - self.kv_used - reserved_tokens
        if not self.running:  # an idle engine takes any prompt that fits (no watermark)
            return free >= request.prefill_target
        return len(self.running) < self.max_num_seqs and free >= request.prefill_target + (
            self.watermark
        )

    def _plan(self) -> None:
        """Choose the batch of the next segment and how many steps it stays unchanged."""
        while self.n_decode > self.kv_capacity - self.kv_used and len(self.running) > 1:
            self._preempt_newest()
        chunks: list[tuple[Request, int]] = []
        decodes = self.n_decode
        if self.chunked_prefill:
            budget = self.max_num_batched_tokens - decodes
            for request in self.prefilling:
                if budget <= 0:
                    break
                chunk = min(budget, request.prefill_target - request.prefilled)
                chunks.append((request, chunk))
                budget -= chunk
            while self.waiting and budget > 0 and self._can_admit(self.waiting[0], decodes):
                request = self.waiting[0]
                self._admit(request)
                chunk = min(budget, request.prefill_target)
                chunks.append((request, chunk))
                budget -= chunk
        else:
            budget = self.max_num_batched_tokens
            while (self.waiting and self.waiting[0].prefill_target <= budget
                   and self._can_admit(self.waiting[0], decodes)):
                request = self.waiting[0]
                self._admit(request)
                chunks.append((request, request.prefill_target))
                budget -= request.prefill_target
            if chunks:
                decodes = 0  # a prefill-only step: decodes pause

        prefill_tokens = sum(chunk for _r, chunk in chunks)
        if not chunks and decodes == 0:
            self.seg_steps = 0
            self.seg_chunks = []
            return
        steps = 1
        if not chunks or (len(chunks) == 1 and chunks[0][1] < self._remaining(chunks[0][0])):
            steps = math.inf  # type: ignore[assignment]
            if chunks:
                steps = (self._remaining(chunks[0][0]) - 1) // chunks[0][1]
            if decodes:
                heap = self._decode_heap
                while heap[0][3].state != RequestState.DECODE or (
                        heap[0][3].decode_entry_step != heap[0][2]):
                    heapq.heappop(heap)
                steps = min(steps, heap[0][0] - self.step,
                            (self.kv_capacity - self.kv_used) // decodes)
            steps = 1 if self.step_by_step else max(1, steps)
        self.seg_steps = steps
        self.seg_decodes = decodes
        self.seg_chunks = chunks
        self.seg_prefill_tokens = prefill_tokens
        self.seg_step_s = (self._overhead_s + self._prefill_s * prefill_tokens
                           + self._decode_s * decodes
                           + self._context_s * (self.ctx_decode + decodes if decodes else 0))
        self.seg_growth_s = self._context_s * decodes

    @staticmethod
    def _remaining(request: Request) -> int:
        return request.prefill_target - request.prefilled
