"""Predict a profile's published benchmark figures from its iteration-time model.

A profile's ``reference`` entries are published vLLM measurements. This module computes what the
profile's four coefficients imply for each of them, so ``benchmarks/fit_profiles.py`` can tune the
coefficients and ``tests/test_profiles.py`` can check they still reproduce the publications.

Two kinds of prediction, chosen by a reference's ``conditions``:

* **Replay** (``conditions`` lists ``prompt_lens`` and ``output_lens``, one entry per request, as
  ``benchmark_serving.py`` saves them): every request arrives at t = 0 (``request_rate: inf``) and
  a deterministic continuous-batching loop runs them -- running sequences decode one token per
  step, waiting prompts are prefilled first-come-first-served in chunks filling the rest of
  ``max_num_batched_tokens``, at most ``max_num_seqs`` running. A finite burst has a ramp (all
  prompts prefill) and a tail (the longest outputs decode almost alone), so its throughput is
  well below the full-batch rate; the replay reproduces both. No preemption: the references fit
  in the KV cache. If ``num_prompts`` exceeds the lists' length the lists are a length sample
  and are cycled to ``num_prompts`` requests.
* **Steady state** (mean ``prompt_tokens`` / ``output_tokens``): the batch holds ``n`` sequences,
  ``n = max_concurrency`` if given (low load) else ``max_num_seqs`` or the KV limit (saturation).
  Each step decodes ``n`` tokens at mean context ``prompt + (output - 1) / 2`` and prefills the
  ``n * prompt / output`` prompt tokens of the requests replacing those that finish, so the
  output rate is ``n / t_iter``.

All times are seconds, rates tokens per second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rlscale.sim.profile import PerformanceProfile, ProfileError

METRICS = (
    "output_throughput_tok_s",
    "median_ttft_s",
    "median_itl_s",
    "median_tpot_s",
)
"""Reference metrics this module can predict (``benchmark_serving.py`` names, in SI units)."""


def step_time_s(
    profile: PerformanceProfile, prefill_tokens: float, decode_seqs: float, context_tokens: float
) -> float:
    """One engine step in seconds; like ``PerformanceProfile.iteration_time_s`` but for means."""
    return (
        profile.overhead_s
        + profile.prefill_s_per_token * prefill_tokens
        + profile.decode_s_per_seq * decode_seqs
        + profile.context_s_per_token * context_tokens
    )


def _blocks_tokens(profile: PerformanceProfile, tokens: float) -> int:
    """Tokens of KV cache a sequence of ``tokens`` occupies, rounded up to whole blocks."""
    block = profile.kv_block_size
    return math.ceil(tokens / block) * block


@dataclass(frozen=True)
class SteadyState:
    """A batch of ``batch`` sequences in equilibrium: step time and output rate."""

    batch: int
    mean_context_tokens: float
    prefill_tokens_per_step: float
    step_s: float
    output_tok_s: float


def saturation_batch(
    profile: PerformanceProfile, prompt_tokens: float, output_tokens: float
) -> int:
    """Sequences running at saturation: ``max_num_seqs`` unless the KV cache or budget binds."""
    per_seq = _blocks_tokens(profile, prompt_tokens + output_tokens)
    kv_limit = profile.kv_capacity_tokens // max(per_seq, 1)
    # Each step must also fit n decode tokens plus the n * prompt / output prefill tokens.
    budget_limit = profile.max_num_batched_tokens / (1.0 + prompt_tokens / max(output_tokens, 1.0))
    return max(1, int(min(profile.max_num_seqs, kv_limit, budget_limit)))


def steady_state(
    profile: PerformanceProfile,
    prompt_tokens: float,
    output_tokens: float,
    batch: int | None = None,
) -> SteadyState:
    """Equilibrium of ``batch`` concurrent requests (saturation batch if ``None``)."""
    if prompt_tokens < 0 or output_tokens < 1:
        raise ValueError("need prompt_tokens >= 0 and output_tokens >= 1")
    n = saturation_batch(profile, prompt_tokens, output_tokens) if batch is None else batch
    if n < 1:
        raise ValueError(f"batch must be >= 1, got {n}")
    context = prompt_tokens + (output_tokens - 1) / 2
    prefill = n * prompt_tokens / output_tokens
    step = step_time_s(profile, prefill, n, n * context)
    return SteadyState(n, context, prefill, step, n / step)


def low_load_ttft_s(profile: PerformanceProfile, prompt_tokens: float, concurrency: int) -> float:
    """TTFT of one request joining ``concurrency - 1`` decoding requests (steady state).

    The prompt is prefilled in chunks of the token budget left after the decodes; with other
    requests running it also waits on average half a decode step for the next step to start.
    """
    others = max(concurrency - 1, 0)
    ss = steady_state(profile, prompt_tokens, max(prompt_tokens, 1.0), batch=max(others, 1))
    context = others * ss.mean_context_tokens
    chunk = max(profile.max_num_batched_tokens - others, 1)
    steps = max(1, math.ceil(prompt_tokens / chunk))
    ttft = sum(
        step_time_s(profile, min(chunk, prompt_tokens - k * chunk), others, context)
        for k in range(steps)
    )
    if others:
        ttft += 0.5 * step_time_s(profile, 0.0, others, context)
    return ttft


@dataclass(frozen=True)
class BatchReplay:
    """Outcome of replaying a burst of requests through the iteration-time model."""

    duration_s: float
    output_tokens: int
    ttft_s: npt.NDArray[np.float64]
    tpot_s: npt.NDArray[np.float64]
    itl_s: npt.NDArray[np.float64]
    itl_weight: npt.NDArray[np.float64]

    @property
    def output_tok_s(self) -> float:
        """Output tokens over the whole burst divided by its duration."""
        return self.output_tokens / self.duration_s

    @property
    def median_itl_s(self) -> float:
        """Median over all inter-token gaps (token-weighted), as ``benchmark_serving`` reports."""
        return _weighted_median(self.itl_s, self.itl_weight)


def _weighted_median(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    if values.size == 0:
        return math.nan
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, 0.5 * cum[-1]))
    return float(values[order][min(idx, values.size - 1)])


def replay_batch(
    profile: PerformanceProfile,
    prompt_lens: Sequence[int],
    output_lens: Sequence[int],
) -> BatchReplay:
    """Run requests that all arrive at t = 0 through the simulator's replica engine.

    This is the same :class:`~rlscale.sim.engine.ReplicaEngine` the cluster runs, so a fitted
    profile reproduces its references in simulation, not only in a formula. ``output_lens`` are
    the published output token counts; a request reported with 0 output tokens (it stopped at
    once) still costs its prefill and one step.
    """
    from rlscale.sim.engine import ReplicaEngine
    from rlscale.sim.request import Request

    if len(prompt_lens) != len(output_lens) or not prompt_lens:
        raise ValueError("prompt_lens and output_lens must be non-empty and of equal length")
    longest = max(p + max(o, 1) for p, o in zip(prompt_lens, output_lens, strict=True))
    if longest > profile.max_model_len:
        profile = profile.with_overrides(max_model_len=longest)
    finished: list[Request] = []
    engine = ReplicaEngine(profile, 0.0, lambda r, _t: finished.append(r))
    engine.step_log = []
    for i, (p, o) in enumerate(zip(prompt_lens, output_lens, strict=True)):
        if p + max(o, 1) > profile.kv_capacity_tokens:
            raise ProfileError(
                f"profile {profile.name!r}: replay stalled (a prompt does not fit in the KV cache)"
            )
        engine.enqueue(Request(i, 0.0, int(p), max(int(o), 1)), 0.0)
    while engine.outstanding:
        engine.on_event(engine.next_event_s)
    itl: list[float] = []
    itl_weight: list[float] = []
    for first_s, growth_s, steps, decodes in engine.step_log:
        if decodes:
            itl.extend(first_s + growth_s * np.arange(steps))
            itl_weight.extend([float(decodes)] * steps)
    ttft = np.array([r.ttft_s for r in finished])
    multi = [r for r in finished if r.output_tokens > 1]
    return BatchReplay(
        duration_s=max(r.finish_s for r in finished),
        output_tokens=int(np.asarray(output_lens, dtype=np.int64).sum()),
        ttft_s=ttft,
        tpot_s=np.array([r.itl_s for r in multi]),
        itl_s=np.asarray(itl, dtype=np.float64),
        itl_weight=np.asarray(itl_weight, dtype=np.float64),
    )


def _int_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise ProfileError(f"reference conditions.{key} must be a list of integers")
    return list(value)


def _number(conditions: Mapping[str, Any], key: str) -> float:
    value = conditions.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ProfileError(f"reference conditions.{key} must be a number, got {value!r}")
    return float(value)


def predict_reference(profile: PerformanceProfile, reference: Mapping[str, Any]) -> float:
    """The profile's prediction for one ``reference`` entry's metric, in the metric's units."""
    metric = reference.get("metric")
    if metric not in METRICS:
        raise ProfileError(f"profile {profile.name!r}: unsupported reference metric {metric!r}")
    conditions = reference.get("conditions")
    if not isinstance(conditions, Mapping):
        raise ProfileError(f"profile {profile.name!r}: reference {metric} has no conditions")
    if "prompt_lens" in conditions or "output_lens" in conditions:
        prompts = _int_list(conditions.get("prompt_lens"), "prompt_lens")
        outputs = _int_list(conditions.get("output_lens"), "output_lens")
        total = int(conditions.get("num_prompts", len(prompts)))
        if total > len(prompts) and prompts:
            # A length *sample* standing in for a larger burst: cycle it to num_prompts.
            prompts = [prompts[i % len(prompts)] for i in range(total)]
            outputs = [outputs[i % len(outputs)] for i in range(total)]
        replay = replay_batch(profile, prompts, outputs)
        return {
            "output_throughput_tok_s": replay.output_tok_s,
            "median_ttft_s": float(np.nanmedian(replay.ttft_s)),
            "median_itl_s": replay.median_itl_s,
            "median_tpot_s": float(np.median(replay.tpot_s)),
        }[metric]
    prompt = _number(conditions, "prompt_tokens")
    output = _number(conditions, "output_tokens")
    concurrency = conditions.get("max_concurrency")
    if concurrency is None:
        if metric != "output_throughput_tok_s":
            raise ProfileError(
                f"profile {profile.name!r}: a saturation reference without per-request lengths "
                f"can only predict output_throughput_tok_s, not {metric}"
            )
        return steady_state(profile, prompt, output).output_tok_s
    k = int(_number(conditions, "max_concurrency"))
    if metric == "median_ttft_s":
        return low_load_ttft_s(profile, prompt, k)
    ss = steady_state(profile, prompt, output, batch=k)
    return ss.output_tok_s if metric == "output_throughput_tok_s" else ss.step_s


@dataclass(frozen=True)
class ReferenceCheck:
    """A published figure next to the profile's prediction of it."""

    metric: str
    published: float
    predicted: float
    source: str

    @property
    def error(self) -> float:
        """Relative error of the prediction, ``predicted / published - 1``."""
        return self.predicted / self.published - 1.0


def check_references(profile: PerformanceProfile) -> list[ReferenceCheck]:
    """Predict every ``reference`` entry of ``profile``."""
    checks = []
    for ref in profile.reference:
        value = ref.get("value")
        if not isinstance(value, (int, float)) or value <= 0:
            raise ProfileError(f"profile {profile.name!r}: reference value must be > 0: {ref!r}")
        checks.append(
            ReferenceCheck(
                metric=str(ref["metric"]),
                published=float(value),
                predicted=predict_reference(profile, ref),
                source=str(ref.get("source", "")),
            )
        )
    return checks
