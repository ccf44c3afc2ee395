"""What one replica serves within an SLO: requests/s for a length mix (the planner's figure),
and prompt and generated tokens/s from the profile alone (the observation's load units)."""

from __future__ import annotations

import math

from rlscale.sim.profile import PerformanceProfile
from rlscale.sim.profile_fit import saturation_batch, steady_state

DEFAULT_HEADROOM = 0.85
"""Fraction of the SLO-bound throughput planned on, leaving room for queueing at bursts."""


def replica_capacity_rps(profile: PerformanceProfile, prompt_tokens: float,
                         output_tokens: float, itl_slo_s: float,
                         headroom: float = DEFAULT_HEADROOM) -> float:
    """Requests per second one replica sustains with its mean step time inside ``itl_slo_s``.

    The steady-state batch grows until the engine saturates or a step (one token for every
    running sequence, plus the prefill of the requests replacing those that finish) would take
    longer than the inter-token SLO; capacity is that batch's completion rate times
    ``headroom``. Lengths are the workload's mean prompt and output tokens.
    """
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    output_tokens = max(output_tokens, 1.0)
    best = steady_state(profile, prompt_tokens, output_tokens, batch=1)
    for batch in range(2, saturation_batch(profile, prompt_tokens, output_tokens) + 1):
        state = steady_state(profile, prompt_tokens, output_tokens, batch=batch)
        if state.step_s > itl_slo_s:
            break
        best = state
    return headroom * best.output_tok_s / output_tokens


REFERENCE_CONTEXT_TOKENS = 1024
"""Context (prompt + generated tokens) per decoding sequence assumed by
:func:`replica_decode_tok_s`: a fixed reference, so that the figure is a constant of the pool,
not of the workload."""


def replica_prefill_tok_s(profile: PerformanceProfile) -> float:
    """Prompt tokens/s one replica prefills when every step is a full chunk of prompts.

    ``B / (overhead_s + prefill_s_per_token x B)`` with ``B = max_num_batched_tokens`` (tokens
    per step): the profile's step-time model with no decoding sequences. It does not depend on
    prompt lengths (chunked prefill packs any mix into full steps).
    """
    budget = float(profile.max_num_batched_tokens)
    return budget / (profile.overhead_s + profile.prefill_s_per_token * budget)


def replica_decode_tok_s(profile: PerformanceProfile, itl_slo_s: float) -> float:
    """Generated tokens/s one replica sustains with its decode step inside ``itl_slo_s``.

    With ``c = REFERENCE_CONTEXT_TOKENS`` of context per sequence, ``n`` is the largest batch
    with ``overhead_s + n x (decode_s_per_seq + context_s_per_token x c) <= itl_slo_s``, at most
    ``max_num_seqs`` and the KV cache's ``kv_capacity_tokens // c`` (at least 1); the figure is
    ``n`` tokens per step over that step's time (s). A constant of the profile and the SLO: at
    other contexts the true figure differs, which the KV-usage and latency entries show.
    """
    if not itl_slo_s > 0:
        raise ValueError(f"itl_slo_s must be > 0, got {itl_slo_s}")
    context = float(REFERENCE_CONTEXT_TOKENS)
    per_seq_s = profile.decode_s_per_seq + profile.context_s_per_token * context
    by_time = math.floor((itl_slo_s - profile.overhead_s) / per_seq_s)
    batch = max(1, min(profile.max_num_seqs, profile.kv_capacity_tokens // int(context),
                       by_time))
    return batch / (profile.overhead_s + per_seq_s * batch)
