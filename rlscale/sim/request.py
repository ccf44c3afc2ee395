"""One inference request as it moves through gateway, router and a replica's engine."""

from __future__ import annotations

import enum
import math


class RequestState(enum.IntEnum):
    """Where a request is. Transitions: GATEWAY -> WAITING -> PREFILL -> DECODE -> FINISHED;
    PREFILL/DECODE -> WAITING on preemption; any -> FAILED (timeout, crash without retry)."""

    GATEWAY = 0
    WAITING = 1
    PREFILL = 2
    DECODE = 3
    FINISHED = 4
    FAILED = 5


class Request:
    """A request and its timeline. Times are seconds of simulated time; counts are tokens.

    ``prefill_target`` is what the engine must prefill before the next token: the prompt, or
    prompt plus generated tokens after a preemption by recompute (as vLLM does).
    """

    __slots__ = (
        "arrival_s",
        "decode_entry_step",
        "dispatch_s",
        "finish_s",
        "first_scheduled_s",
        "first_token_s",
        "generated",
        "id",
        "output_tokens",
        "pod",
        "pool",
        "preemptions",
        "prefill_target",
        "prefilled",
        "prompt_tokens",
        "retries",
        "state",
    )

    def __init__(self, request_id: int, arrival_s: float, prompt_tokens: int,
                 output_tokens: int) -> None:
        self.id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.state = RequestState.GATEWAY
        self.pool = -1
        self.pod = -1
        self.dispatch_s = math.nan
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.finish_s = math.nan
        self.generated = 0
        self.prefill_target = prompt_tokens
        self.prefilled = 0
        self.decode_entry_step = 0
        self.preemptions = 0
        self.retries = 0

    @property
    def ttft_s(self) -> float:
        """Time to first token: arrival at the gateway to the first output token, seconds."""
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        """End-to-end latency: arrival to last token, seconds."""
        return self.finish_s - self.arrival_s

    @property
    def itl_s(self) -> float:
        """Mean inter-token latency (TPOT) over the decode phase, seconds per token; 0 for a
        single-token output."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)

    def __repr__(self) -> str:
        return (f"Request(id={self.id}, state={self.state.name}, prompt={self.prompt_tokens}, "
                f"output={self.output_tokens}, generated={self.generated})")
