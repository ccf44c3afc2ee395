"""How many requests per second one replica serves within an SLO (the planner's and the
observation's capacity figure)."""

from __future__ import annotations

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
