"""Prompt / output length models: where the token counts of generated requests come from.

* :class:`FittedLengths` -- a joint distribution fitted to a real trace, shipped as parameters
  in ``fitted_lengths.yaml`` so no trace file is needed at run time. Built in:
  ``azure-conv-2023`` and ``azure-code-2023``, fitted to the Azure LLM inference traces of
  2023-11-16 (Azure/AzurePublicDataset, CC-BY 4.0; Patel et al., "Splitwise: Efficient
  generative LLM inference using phase splitting", ISCA 2024).
* :class:`TraceLengths` -- resamples (prompt, output) pairs jointly from a trace.
* :class:`ConstantLengths` -- every request the same (tests, calibration).

Every model takes an optional ``max_total_tokens`` cap (see :func:`cap_lengths`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from itertools import pairwise
from statistics import NormalDist
from typing import Any, Protocol, runtime_checkable

import numpy as np
import yaml
from numpy.typing import NDArray

from rlscale.sim.workload.transforms import cap_lengths
from rlscale.sim.workload.workload import Workload

__all__ = [
    "ConstantLengths",
    "FittedLengths",
    "LengthModel",
    "LognormalLengths",
    "QuantileMarginal",
    "TraceLengths",
    "builtin_length_models",
]

Lengths = tuple[NDArray[np.int64], NDArray[np.int64]]
_INTEGER = (int, np.integer)
_FITTED_FILE = "fitted_lengths.yaml"


@runtime_checkable
class LengthModel(Protocol):
    """Anything that draws (prompt, output) token counts for ``n`` requests."""

    def sample(self, n: int, rng: np.random.Generator) -> Lengths:
        """Return ``(prompt_tokens, output_tokens)``: two int64 arrays of length ``n``,
        every value >= 1 (tokens)."""
        ...


def sample_tail(model: LengthModel, n: int, first: int, rng: np.random.Generator) -> Lengths:
    """Pairs ``first`` to ``n - 1`` of ``model.sample(n, rng)``: the same draws, the generator
    moved on as far; a model that can (:class:`FittedLengths`) leaves the tokens of the first
    ones uncomputed."""
    if isinstance(model, FittedLengths):
        return model.sample_tail(n, first, rng)
    prompt, output = model.sample(n, rng)
    return prompt[first:], output[first:]


def _check_n(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, _INTEGER) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")


def _maybe_cap(prompt: NDArray[np.int64], output: NDArray[np.int64], cap: int | None) -> Lengths:
    return (prompt, output) if cap is None else cap_lengths(prompt, output, cap)


def _check_cap(cap: object) -> None:
    if cap is None:
        return
    if isinstance(cap, bool) or not isinstance(cap, _INTEGER) or cap < 2:
        raise ValueError(f"max_total_tokens must be None or an integer >= 2, got {cap!r}")


@dataclass(frozen=True)
class QuantileMarginal:
    """A token-count distribution given by its quantile function at a few probabilities,
    interpolated linearly in (standard-normal score, log tokens) between the knots and
    constant beyond the first/last knot (which hold the trace's minimum and maximum).

    Attributes:
        probs: cumulative probabilities of the knots, strictly increasing in (0, 1).
        tokens: the quantiles at ``probs`` in tokens, non-decreasing, >= 1.
    """

    probs: tuple[float, ...]
    tokens: tuple[float, ...]

    def __post_init__(self) -> None:
        p, x = self.probs, self.tokens
        if len(p) < 2 or len(p) != len(x):
            raise ValueError(f"need >= 2 knots with as many probs as tokens, got {len(p)}/{len(x)}")
        if not all(0 < a < b < 1 for a, b in pairwise(p)):
            raise ValueError("probs must be strictly increasing inside (0, 1)")
        if x[0] < 1 or not all(a <= b for a, b in pairwise(x)):
            raise ValueError("tokens must be non-decreasing and >= 1")

    @cached_property
    def _knots(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The knots as (standard-normal score, log tokens)."""
        return (np.array([NormalDist().inv_cdf(q) for q in self.probs]),
                np.log(np.asarray(self.tokens, dtype=np.float64)))

    def tokens_at(self, z: NDArray[np.float64]) -> NDArray[np.int64]:
        """Map standard-normal scores ``z`` to token counts (int64, rounded, >= 1)."""
        log_x = np.interp(z, *self._knots)
        return np.maximum(np.rint(np.exp(log_x)), 1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.int64]:
        """Draw ``n`` independent token counts."""
        return self.tokens_at(rng.standard_normal(n))


@dataclass(frozen=True)
class FittedLengths:
    """Joint (prompt, output) length distribution fitted to a trace.

    The prompt length is drawn from its empirical quantile function (:class:`QuantileMarginal`);
    the output length from the quantile function of the outputs of the trace requests whose
    prompt fell in the same prompt-length bin (deciles of the prompt length). Both marginals
    match the trace's percentiles by construction (up to interpolation between knots), and the
    binning keeps the dependence between the two, which in the Azure conversation trace is
    strong but not monotone (mid-length prompts get the longest answers), so a single
    correlation coefficient would miss it. A lognormal per column misses the Azure traces'
    multi-modal shapes by 17-26 % at p50 and by up to 80 % at p99 (``benchmarks/fit_lengths.py``).

    Attributes:
        name: the built-in name or a description.
        prompt: marginal of prompt lengths (tokens).
        outputs: output-length marginal (tokens) of each prompt bin, in bin order.
        prompt_edges: inclusive upper prompt length (tokens) of every bin but the last,
            increasing; ``len(outputs) == len(prompt_edges) + 1``.
        max_total_tokens: optional cap on prompt + output (tokens), see :func:`cap_lengths`.
    """

    name: str
    prompt: QuantileMarginal
    outputs: tuple[QuantileMarginal, ...]
    prompt_edges: tuple[float, ...] = ()
    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        if len(self.outputs) != len(self.prompt_edges) + 1:
            raise ValueError(
                f"need one output marginal per prompt bin: {len(self.prompt_edges) + 1} bins, "
                f"got {len(self.outputs)} output marginals"
            )
        if not all(a < b for a, b in pairwise(self.prompt_edges)):
            raise ValueError("prompt_edges must be strictly increasing")
        _check_cap(self.max_total_tokens)

    @classmethod
    def builtin(cls, name: str, *, max_total_tokens: int | None = None) -> FittedLengths:
        """Load a built-in fitted model by name (see :func:`builtin_length_models`)."""
        table = _fitted_table()
        if name not in table:
            raise ValueError(
                f"unknown length model {name!r}; built-in models: {', '.join(sorted(table))}"
            )
        entry = table[name]
        try:
            bins = entry["output_tokens_by_prompt_bin"]
            return cls(
                name=name,
                prompt=QuantileMarginal(*_knots(entry["prompt_tokens"])),
                outputs=tuple(QuantileMarginal(*_knots(b)) for b in bins),
                prompt_edges=tuple(float(b["prompt_tokens_max"]) for b in bins[:-1]),
                max_total_tokens=max_total_tokens,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{_FITTED_FILE}: entry {name!r} is malformed: {err}") from None

    def sample(self, n: int, rng: np.random.Generator) -> Lengths:
        """Draw ``n`` (prompt, output) pairs in tokens (int64 arrays, values >= 1)."""
        return self.sample_tail(n, 0, rng)

    def sample_tail(self, n: int, first: int, rng: np.random.Generator) -> Lengths:
        """Pairs ``first`` to ``n - 1`` of :meth:`sample`'s ``n``: the same draws (the
        generator moves on as far), only the tokens of the others left uncomputed."""
        _check_n(n)
        if not 0 <= first <= n:
            raise ValueError(f"first must be in [0, {n}], got {first!r}")
        prompt = self.prompt.tokens_at(rng.standard_normal(n)[first:])
        z = rng.standard_normal(n)[first:]
        bins = np.searchsorted(np.asarray(self.prompt_edges), prompt, side="left")
        output = np.empty(n - first, dtype=np.int64)
        for k, marginal in enumerate(self.outputs):
            mask = bins == k
            output[mask] = marginal.tokens_at(z[mask])
        return _maybe_cap(prompt, output, self.max_total_tokens)

    def __repr__(self) -> str:
        return f"FittedLengths({self.name!r}, max_total_tokens={self.max_total_tokens})"


@dataclass(frozen=True)
class TraceLengths:
    """Resample (prompt, output) pairs jointly, uniformly with replacement, from a trace.

    Attributes:
        workload: the trace (e.g. from :func:`read_trace`); must not be empty.
        max_total_tokens: optional cap on prompt + output (tokens).
    """

    workload: Workload
    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        if len(self.workload) == 0:
            raise ValueError(f"TraceLengths: workload {self.workload.source!r} is empty")
        _check_cap(self.max_total_tokens)

    def sample(self, n: int, rng: np.random.Generator) -> Lengths:
        """Draw ``n`` (prompt, output) pairs in tokens from the trace's requests."""
        _check_n(n)
        idx = rng.integers(0, len(self.workload), size=n)
        return _maybe_cap(
            self.workload.prompt_tokens[idx],
            self.workload.output_tokens[idx],
            self.max_total_tokens,
        )

    def __repr__(self) -> str:
        return (
            f"TraceLengths({self.workload.source!r}, requests={len(self.workload)}, "
            f"max_total_tokens={self.max_total_tokens})"
        )


@dataclass(frozen=True)
class ConstantLengths:
    """Every request has ``prompt_tokens`` prompt and ``output_tokens`` output tokens (>= 1)."""

    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        for key in ("prompt_tokens", "output_tokens"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, _INTEGER) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")

    def sample(self, n: int, rng: np.random.Generator) -> Lengths:
        """Return ``n`` copies of the fixed (prompt, output) pair; ``rng`` is not used."""
        _check_n(n)
        return (
            np.full(n, self.prompt_tokens, dtype=np.int64),
            np.full(n, self.output_tokens, dtype=np.int64),
        )


@dataclass(frozen=True)
class LognormalLengths:
    """Independent log-normal prompt and output lengths with given means (tokens) and
    coefficients of variation (heavy right tails), rounded to whole tokens >= 1."""

    prompt_mean: float
    prompt_cv: float
    output_mean: float
    output_cv: float

    def __post_init__(self) -> None:
        for key in ("prompt_mean", "prompt_cv", "output_mean", "output_cv"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{key} must be a number > 0, got {value!r}")

    @staticmethod
    def _draw(mean: float, cv: float, n: int, rng: np.random.Generator) -> NDArray[np.int64]:
        sigma = math.sqrt(math.log1p(cv * cv))
        values = rng.lognormal(math.log(mean) - sigma * sigma / 2, sigma, n)
        return np.maximum(np.rint(values), 1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> Lengths:
        """``n`` (prompt, output) pairs, prompts drawn first."""
        _check_n(n)
        prompt = self._draw(self.prompt_mean, self.prompt_cv, n, rng)
        return prompt, self._draw(self.output_mean, self.output_cv, n, rng)


def builtin_length_models() -> list[str]:
    """Names accepted by :meth:`FittedLengths.builtin`, e.g. ``azure-conv-2023``."""
    return sorted(_fitted_table())


def _knots(entry: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(float(p) for p in entry["probs"]), tuple(float(x) for x in entry["tokens"])


@lru_cache(maxsize=1)
def _fitted_table() -> dict[str, Any]:
    text = resources.files("rlscale.sim.workload").joinpath(_FITTED_FILE).read_text()
    table = yaml.safe_load(text)
    if not isinstance(table, dict):
        raise ValueError(f"{_FITTED_FILE}: expected a mapping of model name -> parameters")
    return {str(k): v for k, v in table.items()}
