"""Synthetic arrival processes and :func:`generate`, which pairs one with a length model.

Every process draws sorted arrival times (seconds, float64) in ``[0, duration_s)`` with
``sample(duration_s, rng)``, or in any ``[start_s, end_s)`` with ``sample_between``, and
reports its mean intensity with ``expected_rate(t_s)`` (requests/s). Processes compose:
``FlashCrowd(Diurnal(...), ...)``, ``Superpose(Poisson(...), FlashCrowd(GammaRenewal(...)))``.
All sampling is vectorized (inversion of sorted uniforms, cumulative gamma gaps, thinning),
so 1e6 arrivals take well under a second.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import NDArray

from rlscale.sim.workload.lengths import LengthModel, sample_tail
from rlscale.sim.workload.transforms import cap_lengths
from rlscale.sim.workload.workload import Workload

__all__ = [
    "ArrivalProcess",
    "Diurnal",
    "FlashCrowd",
    "GammaRenewal",
    "Poisson",
    "Superpose",
    "generate",
]

Times = NDArray[np.float64]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _finite(x: object) -> bool:
    """A real number (Python or NumPy, not bool) that is neither infinite nor NaN."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(x)


class ArrivalProcess(ABC):
    """A stationary or time-varying point process of request arrivals."""

    @abstractmethod
    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        """Sorted arrival times (s) in ``[start_s, end_s)``, drawn as if the process had been
        running since before ``start_s`` (renewal processes start in equilibrium)."""

    @abstractmethod
    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Vectorized :meth:`expected_rate`: mean intensity (requests/s) at each time (s)."""

    def sample(self, duration_s: float, rng: np.random.Generator) -> Times:
        """Sorted arrival times (s, float64) in ``[0, duration_s)``."""
        _require(
            _finite(duration_s) and duration_s >= 0,
            f"duration_s must be a finite number >= 0, got {duration_s!r}",
        )
        return self.sample_between(0.0, float(duration_s), rng)

    @overload
    def expected_rate(self, t_s: float) -> float: ...

    @overload
    def expected_rate(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]: ...

    def expected_rate(self, t_s: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
        """Mean arrival intensity in requests/s at time ``t_s`` (s); arrays give arrays.

        For processes with random modulation (``Diurnal`` noise) this is the mean over
        noise realizations."""
        t = np.asarray(t_s, dtype=np.float64)
        r = self.rates(np.atleast_1d(t))
        return float(r[0]) if t.ndim == 0 else r.reshape(t.shape)


def _check_window(start_s: float, end_s: float) -> None:
    _require(
        _finite(start_s) and _finite(end_s),
        f"window bounds must be finite, got [{start_s!r}, {end_s!r})",
    )


@dataclass(frozen=True)
class Poisson(ArrivalProcess):
    """Homogeneous Poisson arrivals at ``rate_per_s`` requests/s (> 0)."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _require(
            _finite(self.rate_per_s) and self.rate_per_s > 0,
            f"Poisson: rate_per_s must be a finite number > 0, got {self.rate_per_s!r}",
        )

    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        _check_window(start_s, end_s)
        span = max(end_s - start_s, 0.0)
        n = rng.poisson(self.rate_per_s * span)
        return np.sort(start_s + rng.random(n) * span)

    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.full(t_s.shape, float(self.rate_per_s))


@dataclass(frozen=True)
class GammaRenewal(ArrivalProcess):
    """Renewal process with gamma-distributed inter-arrival times.

    Attributes:
        rate_per_s: mean arrival rate in requests/s (> 0); the mean gap is ``1/rate_per_s``.
        cv: coefficient of variation of the gaps (> 0): 1 is Poisson, > 1 burstier,
            < 1 more regular. Gamma shape ``k = 1/cv**2``, scale ``1/(rate_per_s * k)``.
    """

    rate_per_s: float
    cv: float

    def __post_init__(self) -> None:
        _require(
            _finite(self.rate_per_s) and self.rate_per_s > 0,
            f"GammaRenewal: rate_per_s must be a finite number > 0, got {self.rate_per_s!r}",
        )
        _require(
            _finite(self.cv) and self.cv > 0,
            f"GammaRenewal: cv must be a finite number > 0, got {self.cv!r}",
        )

    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        _check_window(start_s, end_s)
        if end_s <= start_s:
            return np.empty(0)
        shape = 1.0 / self.cv**2
        scale = 1.0 / (self.rate_per_s * shape)
        # Equilibrium start: the gap covering start_s is length-biased, Gamma(k + 1), and
        # start_s falls uniformly inside it.
        first = start_s + rng.random() * rng.gamma(shape + 1.0, scale)
        mean_n = self.rate_per_s * (end_s - first)
        parts = [np.array([first])]
        last = first
        while last < end_s:
            chunk = int(max(mean_n, 0) + 6 * self.cv * math.sqrt(max(mean_n, 1)) + 16)
            times = last + np.cumsum(rng.gamma(shape, scale, size=chunk))
            parts.append(times)
            last = float(times[-1])
            mean_n = self.rate_per_s * (end_s - last)
        times = np.concatenate(parts)
        return times[times < end_s]

    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.full(t_s.shape, float(self.rate_per_s))


@dataclass(frozen=True)
class Diurnal(ArrivalProcess):
    """Non-homogeneous Poisson process with a sinusoidal rate and optional noise::

        rate(t) = mean_rate_per_s * (1 + amplitude * sin(2*pi*(t - phase_s)/period_s)) * N(t)

    so the rate is rising through its mean at ``phase_s``, peaks at ``phase_s + period_s/4``
    and bottoms at ``phase_s + 3*period_s/4``. ``N(t)`` is log-normal with mean 1 and
    coefficient of variation ``noise_cv``, constant within each ``noise_bucket_s`` bucket
    (buckets aligned to t = 0) and independent across buckets and across calls to
    ``sample``; ``noise_cv = 0`` disables it. Sampled by thinning, bucket by bucket.

    Attributes:
        mean_rate_per_s: time-averaged rate in requests/s (> 0).
        amplitude: relative swing, 0..1 (peak = mean * (1 + amplitude)).
        period_s: period in seconds (> 0), e.g. 86400 for a day.
        phase_s: time shift in seconds.
        noise_cv: coefficient of variation of the multiplicative noise (>= 0).
        noise_bucket_s: length of the noise buckets in seconds (> 0).
    """

    mean_rate_per_s: float
    amplitude: float
    period_s: float
    phase_s: float = 0.0
    noise_cv: float = 0.0
    noise_bucket_s: float = 60.0

    def __post_init__(self) -> None:
        name = "Diurnal"
        _require(
            _finite(self.mean_rate_per_s) and self.mean_rate_per_s > 0,
            f"{name}: mean_rate_per_s must be a finite number > 0, got {self.mean_rate_per_s!r}",
        )
        _require(
            _finite(self.amplitude) and 0 <= self.amplitude <= 1,
            f"{name}: amplitude must be a number in [0, 1], got {self.amplitude!r}",
        )
        _require(
            _finite(self.period_s) and self.period_s > 0,
            f"{name}: period_s must be a finite number > 0, got {self.period_s!r}",
        )
        _require(_finite(self.phase_s), f"{name}: phase_s must be finite, got {self.phase_s!r}")
        _require(
            _finite(self.noise_cv) and self.noise_cv >= 0,
            f"{name}: noise_cv must be a finite number >= 0, got {self.noise_cv!r}",
        )
        _require(
            _finite(self.noise_bucket_s) and self.noise_bucket_s > 0,
            f"{name}: noise_bucket_s must be a finite number > 0, got {self.noise_bucket_s!r}",
        )

    def _shape(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        phase = 2.0 * np.pi * (t_s - self.phase_s) / self.period_s
        return 1.0 + self.amplitude * np.sin(phase)

    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.mean_rate_per_s * self._shape(t_s)

    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        _check_window(start_s, end_s)
        if end_s <= start_s:
            return np.empty(0)
        b = self.noise_bucket_s
        k = np.arange(math.floor(start_s / b), math.ceil(end_s / b))
        lo = np.maximum(k * b, start_s)
        hi = np.minimum((k + 1) * b, end_s)
        if self.noise_cv > 0:
            sigma2 = math.log1p(self.noise_cv**2)
            noise = rng.lognormal(-0.5 * sigma2, math.sqrt(sigma2), size=len(k))
        else:
            noise = np.ones(len(k))
        bound = self.mean_rate_per_s * (1.0 + self.amplitude) * noise
        counts = rng.poisson(bound * (hi - lo))
        t = np.repeat(lo, counts) + rng.random(int(counts.sum())) * np.repeat(hi - lo, counts)
        keep = rng.random(len(t)) * (1.0 + self.amplitude) < self._shape(t)
        return np.sort(t[keep])


@dataclass(frozen=True)
class FlashCrowd(ArrivalProcess):
    """Multiply ``base``'s arrival rate by ``multiplier`` during
    ``[start_s, start_s + duration_s)``.

    ``multiplier > 1`` superposes ``multiplier - 1`` extra independent copies of ``base``
    inside the window (``floor(multiplier - 1)`` full copies plus one thinned by the
    fractional part); ``multiplier < 1`` thins ``base``'s arrivals in the window. The mean rate
    is exactly ``multiplier`` times ``base``'s; for a Poisson-type base (Poisson, Diurnal) the
    result is again Poisson-type, for a renewal base the burst is less bursty than the base
    (superposed renewal processes tend to Poisson). The extra copies of a noisy ``Diurnal``
    base draw their own noise.

    Attributes:
        base: the process being modulated.
        multiplier: rate factor in the window (> 0).
        start_s: window start (s, >= 0).
        duration_s: window length (s, > 0).
    """

    base: ArrivalProcess
    multiplier: float
    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        _require(
            isinstance(self.base, ArrivalProcess),
            f"FlashCrowd: base must be an ArrivalProcess, got {self.base!r}",
        )
        _require(
            _finite(self.multiplier) and self.multiplier > 0,
            f"FlashCrowd: multiplier must be a finite number > 0, got {self.multiplier!r}",
        )
        _require(
            _finite(self.start_s) and self.start_s >= 0,
            f"FlashCrowd: start_s must be a finite number >= 0, got {self.start_s!r}",
        )
        _require(
            _finite(self.duration_s) and self.duration_s > 0,
            f"FlashCrowd: duration_s must be a finite number > 0, got {self.duration_s!r}",
        )

    @property
    def end_s(self) -> float:
        """End of the flash-crowd window (s)."""
        return float(self.start_s + self.duration_s)

    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        inside = (t_s >= self.start_s) & (t_s < self.end_s)
        return self.base.rates(t_s) * np.where(inside, self.multiplier, 1.0)

    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        _check_window(start_s, end_s)
        times = self.base.sample_between(start_s, end_s, rng)
        lo, hi = max(start_s, self.start_s), min(end_s, self.end_s)
        if hi <= lo or self.multiplier == 1:
            return times
        if self.multiplier < 1:
            inside = (times >= lo) & (times < hi)
            drop = inside & (rng.random(len(times)) >= self.multiplier)
            return times[~drop]
        extra = self.multiplier - 1.0
        parts = [times]
        for _ in range(math.floor(extra)):
            parts.append(self.base.sample_between(lo, hi, rng))
        frac = extra - math.floor(extra)
        if frac > 0:
            more = self.base.sample_between(lo, hi, rng)
            parts.append(more[rng.random(len(more)) < frac])
        return np.sort(np.concatenate(parts))


class Superpose(ArrivalProcess):
    """The union of independent arrival processes; rates add."""

    def __init__(self, *processes: ArrivalProcess) -> None:
        _require(len(processes) > 0, "Superpose: needs at least one process")
        for p in processes:
            _require(
                isinstance(p, ArrivalProcess),
                f"Superpose: every argument must be an ArrivalProcess, got {p!r}",
            )
        self.processes: tuple[ArrivalProcess, ...] = tuple(processes)

    def __repr__(self) -> str:
        return f"Superpose({', '.join(repr(p) for p in self.processes)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Superpose) and self.processes == other.processes

    def __hash__(self) -> int:
        return hash(self.processes)

    def rates(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        total = np.zeros(t_s.shape)
        for p in self.processes:
            total += p.rates(t_s)
        return total

    def sample_between(self, start_s: float, end_s: float, rng: np.random.Generator) -> Times:
        _check_window(start_s, end_s)
        return np.sort(
            np.concatenate([p.sample_between(start_s, end_s, rng) for p in self.processes])
        )


def generate(
    arrivals: ArrivalProcess,
    lengths: LengthModel,
    duration_s: float,
    rng: np.random.Generator,
    *,
    max_total_tokens: int | None = None,
    skip_before_s: float = 0.0,
) -> Workload:
    """Draw a synthetic workload: arrival times from ``arrivals`` over ``[0, duration_s)``
    (seconds), then one (prompt, output) pair per arrival from ``lengths``, optionally capped
    so prompt + output <= ``max_total_tokens``. The same ``rng`` state gives the same
    workload.

    With ``skip_before_s`` (seconds) the requests arriving before it are left out: the
    others, drawn exactly as without it, are the same requests, and the lengths of the ones
    left out are not computed (an episode that starts late in the day costs half the time).

    ``metadata`` records ``duration_s``, ``arrivals``, ``lengths`` and ``max_total_tokens``.
    """
    times = arrivals.sample(duration_s, rng)
    first = int(np.searchsorted(times, skip_before_s, side="left")) if skip_before_s > 0 else 0
    prompt, output = sample_tail(lengths, len(times), first, rng)
    times = times[first:]
    if max_total_tokens is not None:
        prompt, output = cap_lengths(prompt, output, max_total_tokens)
    return Workload(
        arrival_s=times.astype(np.float64, copy=False),
        prompt_tokens=prompt.astype(np.int64, copy=False),
        output_tokens=output.astype(np.int64, copy=False),
        source=f"generated: {arrivals!r}",
        metadata={
            "duration_s": float(duration_s),
            "arrivals": repr(arrivals),
            "lengths": repr(lengths),
            "max_total_tokens": max_total_tokens,
        },
    )
