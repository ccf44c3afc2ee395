"""Windowing, replay-speed and rate scaling, and token caps for :class:`Workload` streams.

Every function returns a new workload; the input is not modified. Each appends a short
description of itself to ``metadata["transforms"]``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.workload.workload import Workload

__all__ = ["cap_lengths", "cap_total_tokens", "rate_scaled", "time_scaled", "window"]


def _derived(
    w: Workload,
    arrival_s: NDArray[np.float64],
    prompt: NDArray[np.int64],
    output: NDArray[np.int64],
    step: str,
    **extra: object,
) -> Workload:
    previous = w.metadata.get("transforms", [])
    steps = [*previous, step] if isinstance(previous, list) else [step]
    return Workload(
        arrival_s=arrival_s,
        prompt_tokens=prompt,
        output_tokens=output,
        source=w.source,
        metadata={**w.metadata, "transforms": steps, **extra},
    )


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def window(w: Workload, start_s: float, duration_s: float) -> Workload:
    """The requests arriving in ``[start_s, start_s + duration_s)``, re-based so that
    ``start_s`` becomes time 0 (the gap before the first request in the window is kept).

    Args:
        w: the stream.
        start_s: window start in seconds on ``w``'s clock (>= 0).
        duration_s: window length in seconds (> 0).
    """
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be a finite number >= 0, got {start_s!r}")
    _positive("duration_s", duration_s)
    lo, hi = np.searchsorted(w.arrival_s, [start_s, start_s + duration_s], side="left")
    return _derived(
        w,
        w.arrival_s[lo:hi] - start_s,
        w.prompt_tokens[lo:hi].copy(),
        w.output_tokens[lo:hi].copy(),
        f"window(start_s={start_s:g}, duration_s={duration_s:g})",
    )


def time_scaled(w: Workload, factor: float) -> Workload:
    """Replay ``factor`` times faster: every arrival time is divided by ``factor`` (> 0), so
    the request rate is multiplied by ``factor`` and the stream lasts ``1/factor`` as long.
    Token counts are unchanged."""
    _positive("factor", factor)
    return _derived(
        w,
        w.arrival_s / factor,
        w.prompt_tokens.copy(),
        w.output_tokens.copy(),
        f"time_scaled({factor:g})",
    )


def rate_scaled(w: Workload, factor: float, rng: np.random.Generator) -> Workload:
    """Multiply the request rate by ``factor`` (> 0) while keeping the stream's duration, its
    rate profile over time (bursts, diurnal shape) and its length distribution.

    Method:
        * ``factor <= 1`` (thinning): each request is kept independently with probability
          ``factor``.
        * ``factor > 1`` (superposition): every request is kept, and request ``i`` gets
          ``floor(factor - 1)`` extra copies plus one more with probability
          ``frac(factor - 1)``, so the expected count is ``factor * len(w)``. A copy has the
          same prompt/output lengths as request ``i`` and an arrival time drawn uniformly
          between its neighbours' arrivals ``(t[i-1], t[i+1])`` (clamped to the first/last
          arrival), so copies land where the original stream was dense: locally the rate is
          multiplied by ``factor``. Copies of one request are not simultaneous.
    """
    _positive("factor", factor)
    n = len(w)
    if n == 0 or factor == 1:
        return _derived(
            w,
            w.arrival_s.copy(),
            w.prompt_tokens.copy(),
            w.output_tokens.copy(),
            f"rate_scaled({factor:g})",
        )
    if factor < 1:
        keep = rng.random(n) < factor
        return _derived(
            w,
            w.arrival_s[keep],
            w.prompt_tokens[keep],
            w.output_tokens[keep],
            f"rate_scaled({factor:g}, thinning)",
        )
    extra = factor - 1.0
    copies = np.full(n, math.floor(extra), dtype=np.int64)
    copies += rng.random(n) < (extra - math.floor(extra))
    src = np.repeat(np.arange(n), copies)
    t = w.arrival_s
    lo = t[np.maximum(src - 1, 0)]
    hi = t[np.minimum(src + 1, n - 1)]
    t_new = lo + rng.random(len(src)) * (hi - lo)
    arrival = np.concatenate([t, t_new])
    order = np.argsort(arrival, kind="stable")
    prompt = np.concatenate([w.prompt_tokens, w.prompt_tokens[src]])[order]
    output = np.concatenate([w.output_tokens, w.output_tokens[src]])[order]
    return _derived(w, arrival[order], prompt, output, f"rate_scaled({factor:g}, superposition)")


def cap_lengths(
    prompt: NDArray[np.int64], output: NDArray[np.int64], max_total_tokens: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Truncate so that ``prompt + output <= max_total_tokens`` (e.g. the model's context
    length): the prompt is shortened first, down to 1 token, then the output, down to 1.

    Args:
        prompt: prompt lengths in tokens (>= 1).
        output: output lengths in tokens (>= 1).
        max_total_tokens: the cap in tokens (>= 2).
    """
    if isinstance(max_total_tokens, bool) or int(max_total_tokens) != max_total_tokens:
        raise ValueError(f"max_total_tokens must be an integer >= 2, got {max_total_tokens!r}")
    if max_total_tokens < 2:
        raise ValueError(f"max_total_tokens must be an integer >= 2, got {max_total_tokens!r}")
    cap = np.int64(max_total_tokens)
    new_prompt = np.clip(np.minimum(prompt, cap - output), 1, None).astype(np.int64)
    new_output = np.minimum(output, cap - new_prompt).astype(np.int64)
    return new_prompt, new_output


def cap_total_tokens(w: Workload, max_total_tokens: int) -> Workload:
    """Truncate every request so ``prompt + output <= max_total_tokens``; see
    :func:`cap_lengths`. ``metadata["capped_requests"]`` is set to the number of requests
    this call truncated."""
    prompt, output = cap_lengths(w.prompt_tokens, w.output_tokens, max_total_tokens)
    changed = int(np.count_nonzero((prompt != w.prompt_tokens) | (output != w.output_tokens)))
    return _derived(
        w,
        w.arrival_s.copy(),
        prompt,
        output,
        f"cap_total_tokens({max_total_tokens})",
        capped_requests=changed,
    )
