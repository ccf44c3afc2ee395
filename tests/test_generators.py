"""Arrival processes (rates, burstiness, modulation, composition), generate() and
workload_from_config()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlscale.sim.workload import (
    ArrivalProcess,
    ConstantLengths,
    Diurnal,
    FittedLengths,
    FlashCrowd,
    GammaRenewal,
    LognormalLengths,
    Poisson,
    Superpose,
    WorkloadConfigError,
    generate,
    workload_from_config,
)

TRACES = Path(__file__).resolve().parents[2] / "shared/data/traces"
needs_traces = pytest.mark.skipif(
    not (TRACES / "AzureLLMInferenceTrace_code.csv").is_file(),
    reason=f"Azure LLM inference traces not found in {TRACES} (expected shared/ beside the repo)",
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def count_in(t: np.ndarray, lo: float, hi: float) -> int:
    return int(np.count_nonzero((t >= lo) & (t < hi)))


def expected_count(p: ArrivalProcess, lo: float, hi: float) -> float:
    """Integral of the expected rate over [lo, hi) (midpoint rule, 0.01 s steps)."""
    grid = np.arange(lo, hi, 0.01) + 0.005
    return float(p.expected_rate(grid).sum() * 0.01)


def within(measured: float, expected: float, sigmas: float = 4.0) -> bool:
    """Poisson count check: |measured - expected| <= sigmas * sqrt(expected)."""
    return bool(abs(measured - expected) <= sigmas * np.sqrt(expected))


# -------------------------------------------------------------------------- basic contracts


PROCESSES: list[ArrivalProcess] = [
    Poisson(20.0),
    GammaRenewal(20.0, 2.0),
    Diurnal(20.0, 0.8, 300.0, phase_s=30.0, noise_cv=0.3, noise_bucket_s=10.0),
    FlashCrowd(Poisson(20.0), 3.0, 100.0, 50.0),
    Superpose(Poisson(5.0), FlashCrowd(GammaRenewal(10.0, 0.5), 2.5, 10.0, 100.0)),
]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_sample_is_sorted_in_range_and_deterministic(process: ArrivalProcess) -> None:
    a = process.sample(500.0, rng(1))
    b = process.sample(500.0, rng(1))
    c = process.sample(500.0, rng(2))
    assert a.dtype == np.float64
    assert len(a) > 1000
    assert np.all(np.diff(a) >= 0)
    assert a[0] >= 0
    assert a[-1] < 500.0
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:100], c[:100])
    assert len(process.sample(0.0, rng())) == 0
    w = process.sample_between(200.0, 260.0, rng(3))
    assert w.min() >= 200.0
    assert w.max() < 260.0


def test_expected_rate_scalar_and_array() -> None:
    d = Diurnal(10.0, 0.5, 400.0)
    assert isinstance(d.expected_rate(100.0), float)
    assert d.expected_rate(100.0) == pytest.approx(15.0)  # peak at phase + period/4
    assert d.expected_rate(300.0) == pytest.approx(5.0)  # trough at phase + 3 period/4
    grid = np.array([[0.0, 100.0], [200.0, 300.0]])
    np.testing.assert_allclose(d.expected_rate(grid), [[10.0, 15.0], [10.0, 5.0]], atol=1e-9)


# --------------------------------------------------------------------------------- Poisson, gamma


def test_poisson_rate_and_exponential_gaps() -> None:
    t = Poisson(50.0).sample(2000.0, rng(4))
    assert within(len(t), 100_000)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.02, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("cv", [0.3, 1.0, 2.0, 3.0])
def test_gamma_renewal_rate_and_cv(cv: float) -> None:
    t = GammaRenewal(100.0, cv).sample(2000.0, rng(5))
    assert len(t) / 2000.0 == pytest.approx(100.0, rel=0.03)
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.04)


def test_gamma_renewal_starts_in_equilibrium() -> None:
    """A window of a bursty renewal process holds rate * length arrivals on average; starting
    with a fresh gap (or an arrival) at the window start would bias the count."""
    p = GammaRenewal(1.0, 3.0)
    g = rng(6)
    counts = [len(p.sample_between(50.0, 60.0, g)) for _ in range(3000)]
    # Var(count) ~ cv^2 * rate * T = 90, so the mean of 3000 has sd 0.17.
    assert np.mean(counts) == pytest.approx(10.0, abs=0.7)


# ---------------------------------------------------------------------------------------- diurnal


def test_diurnal_peak_and_trough_rates() -> None:
    d = Diurnal(20.0, 0.5, 600.0, phase_s=100.0)
    t = d.sample(36_000.0, rng(7))  # 60 periods
    assert within(len(t), 720_000)
    phase = (t - 100.0) % 600.0
    peak = count_in(phase, 135.0, 165.0) / (60 * 30.0)  # around phase + 150 s
    trough = count_in(phase, 435.0, 465.0) / (60 * 30.0)  # around phase + 450 s
    assert peak == pytest.approx(expected_count(d, 235.0, 265.0) / 30.0, rel=0.03)
    assert trough == pytest.approx(expected_count(d, 535.0, 565.0) / 30.0, rel=0.04)
    assert peak == pytest.approx(29.9, rel=0.03)
    assert trough == pytest.approx(10.1, rel=0.04)


def test_diurnal_noise_is_mean_one_and_piecewise_constant() -> None:
    d = Diurnal(10.0, 0.0, 1e9, noise_cv=0.5, noise_bucket_s=30.0)
    t = d.sample(36_000.0, rng(8))
    assert len(t) / 36_000.0 == pytest.approx(10.0, rel=0.06)
    counts = np.bincount((t // 30.0).astype(int), minlength=1200)
    # Count CV^2 = 1/mean (Poisson) + noise_cv^2 (log-normal bucket factor).
    assert counts.std() / counts.mean() == pytest.approx(np.sqrt(1 / 300 + 0.25), rel=0.12)
    quiet = Diurnal(10.0, 0.0, 1e9).sample(36_000.0, rng(8))
    quiet_counts = np.bincount((quiet // 30.0).astype(int), minlength=1200)
    assert quiet_counts.std() / quiet_counts.mean() == pytest.approx(np.sqrt(1 / 300), rel=0.12)


# ------------------------------------------------------------------------- flash crowd, superpose


@pytest.mark.parametrize("multiplier", [4.0, 2.5, 0.25])
def test_flash_crowd_multiplies_rate_in_window(multiplier: float) -> None:
    f = FlashCrowd(Poisson(10.0), multiplier, 600.0, 120.0)
    g = rng(9)
    runs = [f.sample(1200.0, g) for _ in range(5)]
    inside = sum(count_in(t, 600.0, 720.0) for t in runs)
    before = sum(count_in(t, 0.0, 600.0) for t in runs)
    after = sum(count_in(t, 720.0, 1200.0) for t in runs)
    assert within(inside, 5 * 120 * 10.0 * multiplier)
    assert within(before, 5 * 600 * 10.0)
    assert within(after, 5 * 480 * 10.0)
    assert f.expected_rate(650.0) == pytest.approx(10.0 * multiplier)
    assert f.expected_rate(720.0) == pytest.approx(10.0)


def test_flash_crowd_modulates_a_diurnal_process() -> None:
    d = Diurnal(20.0, 0.5, 3600.0)
    f = FlashCrowd(d, 3.0, 600.0, 300.0)
    g = rng(10)
    runs = [f.sample(1800.0, g) for _ in range(4)]
    inside = sum(count_in(t, 600.0, 900.0) for t in runs)
    outside = sum(count_in(t, 900.0, 1800.0) for t in runs)
    assert within(inside, 4 * 3 * expected_count(d, 600.0, 900.0))
    assert within(outside, 4 * expected_count(d, 900.0, 1800.0))
    assert f.expected_rate(750.0) == pytest.approx(3 * d.expected_rate(750.0))


def test_flash_crowd_on_renewal_base() -> None:
    f = FlashCrowd(GammaRenewal(10.0, 2.0), 2.0, 100.0, 400.0)
    g = rng(11)
    inside = [count_in(f.sample(600.0, g), 100.0, 500.0) for _ in range(20)]
    # Var per run ~ 2 * cv^2 * 10 * 400 = 32,000; the mean of 20 runs has sd 40.
    assert np.mean(inside) == pytest.approx(8000.0, abs=200.0)


def test_superpose_adds_rates_and_composes() -> None:
    s = Superpose(Poisson(5.0), Diurnal(10.0, 1.0, 1000.0), FlashCrowd(Poisson(2.0), 5.0, 0, 100))
    assert s.expected_rate(250.0) == pytest.approx(5.0 + 20.0 + 2.0)
    assert s.expected_rate(50.0) == pytest.approx(5.0 + 10.0 * (1 + np.sin(0.1 * np.pi)) + 10.0)
    t = s.sample(2000.0, rng(12))
    assert within(len(t), expected_count(s, 0.0, 2000.0))
    assert repr(s).startswith("Superpose(Poisson(rate_per_s=5.0), Diurnal(")


def test_one_million_arrivals_come_in_the_right_number() -> None:
    """At 10,000 req/s for 100 s (their speed: benchmarks/sim_speed.py)."""
    noisy = Diurnal(1e4, 0.5, 50.0, noise_cv=0.2, noise_bucket_s=1.0)
    for process in (Poisson(1e4), GammaRenewal(1e4, 2.0), noisy):
        t = process.sample(100.0, rng(13))
        assert len(t) == pytest.approx(1e6, rel=0.05)  # noise: 100 buckets, mean sd 2 %


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Poisson(0.0), "Poisson: rate_per_s must be a finite number > 0, got 0.0"),
        (lambda: GammaRenewal(1.0, -1.0), "GammaRenewal: cv must be a finite number > 0"),
        (lambda: Diurnal(1.0, 1.5, 10.0), r"amplitude must be a number in \[0, 1\], got 1.5"),
        (lambda: Diurnal(1.0, 0.5, 0.0), "period_s must be a finite number > 0"),
        (lambda: FlashCrowd(Poisson(1.0), 0.0, 0.0, 1.0), "multiplier must be a finite number"),
        (lambda: Superpose(), "Superpose: needs at least one process"),
        (lambda: Poisson(1.0).sample(-1.0, rng()), "duration_s must be a finite number >= 0"),
    ],
)
def test_invalid_parameters(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# ---------------------------------------------------------------------------------------- generate


def test_generate_pairs_arrivals_with_lengths_and_caps() -> None:
    lengths = FittedLengths.builtin("azure-code-2023")
    w = generate(Poisson(20.0), lengths, 600.0, rng(14), max_total_tokens=2048)
    v = generate(Poisson(20.0), lengths, 600.0, rng(14), max_total_tokens=2048)
    assert within(len(w), 12_000)
    assert np.array_equal(w.arrival_s, v.arrival_s)
    assert np.array_equal(w.prompt_tokens, v.prompt_tokens)
    assert np.array_equal(w.output_tokens, v.output_tokens)
    assert (w.prompt_tokens + w.output_tokens).max() <= 2048
    assert w.prompt_tokens.min() >= 1
    assert w.metadata["duration_s"] == 600.0
    assert w.source == "generated: Poisson(rate_per_s=20.0)"


# ----------------------------------------------------------------------------- workload_from_config


def test_config_generator_example() -> None:
    cfg = {
        "generator": {"kind": "diurnal", "mean_rate_per_s": 5, "amplitude": 0.5, "period_s": 3600},
        "flash_crowd": {"multiplier": 4, "start_s": 600, "duration_s": 120},
        "lengths": "azure-conv-2023",
        "duration_s": 3600,
        "max_total_tokens": 8192,
    }
    w = workload_from_config(cfg, rng(15))
    again = workload_from_config(cfg, rng(15))
    assert np.array_equal(w.arrival_s, again.arrival_s)
    assert np.array_equal(w.output_tokens, again.output_tokens)
    process = FlashCrowd(Diurnal(5.0, 0.5, 3600.0), 4.0, 600.0, 120.0)
    assert within(len(w), expected_count(process, 0.0, 3600.0))
    assert within(count_in(w.arrival_s, 600.0, 720.0), expected_count(process, 600.0, 720.0))
    assert (w.prompt_tokens + w.output_tokens).max() <= 8192
    assert w.arrival_s[-1] < 3600.0


def test_config_superposed_generators_and_constant_lengths() -> None:
    cfg = {
        "generator": [
            {"kind": "poisson", "rate_per_s": 3},
            {"kind": "gamma", "rate_per_s": 2, "cv": 2},
        ],
        "flash_crowd": [{"multiplier": 2, "start_s": 0, "duration_s": 10}],
        "lengths": {"prompt_tokens": 512, "output_tokens": 64},
        "duration_s": 1000,
    }
    w = workload_from_config(cfg, rng(16))
    assert len(w) == pytest.approx(5050, rel=0.1)
    assert set(w.prompt_tokens.tolist()) == {512}
    assert set(w.output_tokens.tolist()) == {64}


def test_config_trace_with_relative_path_and_transforms(tmp_path: Path) -> None:
    rows = "".join(f"{i * 0.5},{100 + i},{10 + i}\n" for i in range(400))  # 2 req/s for 200 s
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "t.csv").write_text(f"arrival_s,prompt_tokens,output_tokens\n{rows}")
    cfg = {
        "trace": "traces/t.csv",
        "window": {"start_s": 50, "duration_s": 100},
        "time_scale": 2,
        "rate_scale": 3,
        "max_total_tokens": 300,
    }
    w = workload_from_config(cfg, rng(17), base_dir=tmp_path)
    assert len(w) == 600  # 200 requests in the window, 3x
    assert w.arrival_s[0] == 0.0
    assert w.arrival_s[-1] <= 49.75  # window [50, 150) halved
    assert (w.prompt_tokens + w.output_tokens).max() <= 300
    assert w.metadata["transforms"] == [
        "window(start_s=50, duration_s=100)",
        "time_scaled(2)",
        "rate_scaled(3, superposition)",
        "cap_total_tokens(300)",
    ]
    replaced = workload_from_config(
        {"trace": str(tmp_path / "traces/t.csv"), "lengths": "azure-code-2023"}, rng(18)
    )
    assert len(replaced) == 400
    assert replaced.prompt_tokens.max() > 600  # no longer the trace's 100..499


@needs_traces
def test_config_real_trace_and_trace_lengths(tmp_path: Path) -> None:
    w = workload_from_config(
        {
            "trace": "AzureLLMInferenceTrace_conv.csv",
            "window": {"start_s": 600, "duration_s": 600},
            "time_scale": 2,
        },
        rng(19),
        base_dir=TRACES,
    )
    assert 2000 < len(w) < 5000
    assert w.arrival_s[-1] < 300.0
    g = workload_from_config(
        {
            "generator": {"kind": "poisson", "rate_per_s": 10},
            "duration_s": 100,
            "lengths": {"trace": str(TRACES / "AzureLLMInferenceTrace_code.csv")},
        },
        rng(20),
    )
    assert g.prompt_tokens.max() <= 7437


GEN = {
    "generator": {"kind": "poisson", "rate_per_s": 1},
    "lengths": "azure-conv-2023",
    "duration_s": 10,
}


def with_(**changes: Any) -> dict[str, Any]:
    cfg = dict(GEN)
    cfg.update(changes)
    return cfg


BAD_CONFIGS: list[tuple[Any, str]] = [
    (
        with_(generator={"kind": "gamma", "rate_per_s": 5, "cv": -1}),
        r"^workload\.generator\.cv: expected a number > 0, got -1$",
    ),
    (
        with_(durations=5),
        r"^workload: unknown key 'durations'; valid keys: generator, "
        r"flash_crowd, lengths, duration_s, max_total_tokens$",
    ),
    (
        with_(generator={"kind": "poisson", "rate": 5}),
        r"^workload\.generator: unknown key 'rate'; valid keys: kind, rate_per_s$",
    ),
    (
        with_(generator={"kind": "weibull"}),
        r"^workload\.generator\.kind: expected one of poisson, gamma, diurnal, got 'weibull'$",
    ),
    (
        with_(generator={"kind": "poisson", "rate_per_s": True}),
        r"^workload\.generator\.rate_per_s: expected a number > 0, got True$",
    ),
    (
        with_(generator={"kind": "poisson", "rate_per_s": "5"}),
        r"^workload\.generator\.rate_per_s: expected a number > 0, got '5'$",
    ),
    (
        with_(generator={"kind": "poisson"}),
        r"^workload\.generator: missing required key 'rate_per_s'$",
    ),
    (
        with_(generator={"kind": "diurnal", "mean_rate_per_s": 5, "amplitude": 2, "period_s": 9}),
        r"^workload\.generator\.amplitude: expected a number in \[0, 1\], got 2$",
    ),
    (
        with_(generator=[]),
        r"^workload\.generator: expected a mapping or a non-empty list of "
        r"mappings, got \[\]$",
    ),
    (
        with_(
            generator=[{"kind": "poisson", "rate_per_s": 1}, {"kind": "poisson", "rate_per_s": 0}]
        ),
        r"^workload\.generator\[1\]\.rate_per_s: expected a number > 0, got 0$",
    ),
    (
        with_(flash_crowd={"multiplier": 0, "start_s": 1, "duration_s": 1}),
        r"^workload\.flash_crowd\.multiplier: expected a number > 0, got 0$",
    ),
    (
        with_(flash_crowd={"multiplier": 2, "start_s": -1, "duration_s": 1}),
        r"^workload\.flash_crowd\.start_s: expected a number >= 0, got -1$",
    ),
    (
        with_(lengths="azure-chat"),
        r"^workload\.lengths: expected a built-in length model "
        r"\(azure-code-2023, azure-conv-2023\), .*got 'azure-chat'$",
    ),
    (
        with_(lengths={"prompt_tokens": 0, "output_tokens": 5}),
        r"^workload\.lengths\.prompt_tokens: expected an integer >= 1, got 0$",
    ),
    (
        with_(lengths={"trace": "/nonexistent/t.csv"}),
        r"^workload\.lengths\.trace: trace file not found: /nonexistent/t\.csv$",
    ),
    (with_(max_total_tokens=1), r"^workload\.max_total_tokens: expected an integer >= 2, got 1$"),
    (with_(duration_s=0), r"^workload\.duration_s: expected a number > 0, got 0$"),
    (
        {k: v for k, v in GEN.items() if k != "duration_s"},
        r"^workload: missing required key 'duration_s'$",
    ),
    (
        {k: v for k, v in GEN.items() if k != "lengths"},
        r"^workload: missing required key 'lengths'$",
    ),
    (with_(trace="t.csv"), r"^workload: expected exactly one of 'trace' .* or 'generator'"),
    ({"duration_s": 5}, r"^workload: expected exactly one of 'trace'"),
    ([1, 2], r"^workload: expected a mapping with either 'trace' or 'generator', got \[1, 2\]$"),
    ({"trace": "/nonexistent/t.csv"}, r"^workload\.trace: trace file not found"),
    (
        {"trace": "/nonexistent/t.csv", "duration_s": 5},
        r"^workload: unknown key 'duration_s'; valid keys: trace, model, window, time_scale, "
        r"rate_scale, lengths, max_total_tokens$",
    ),
]


@pytest.mark.parametrize(("cfg", "message"), BAD_CONFIGS)
def test_invalid_config_names_the_field(cfg: Any, message: str) -> None:
    with pytest.raises(WorkloadConfigError, match=message):
        workload_from_config(cfg, rng())


def test_invalid_trace_config_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,10,5\n")
    with pytest.raises(
        WorkloadConfigError,
        match=r"^workload\.window: unknown key 'end_s'; "
        r"valid keys: start_s, duration_s$",
    ):
        workload_from_config({"trace": str(path), "window": {"start_s": 0, "end_s": 5}}, rng())
    with pytest.raises(
        WorkloadConfigError,
        match=r"^workload\.window: selects no requests; "
        r"the trace's arrivals span 0-1\.0 s$",
    ):
        workload_from_config(
            {"trace": str(path), "window": {"start_s": 50, "duration_s": 5}}, rng()
        )
    with pytest.raises(WorkloadConfigError, match=r"^workload\.rate_scale: expected a number > 0"):
        workload_from_config({"trace": str(path), "rate_scale": -2}, rng())


def test_constant_lengths_type() -> None:
    assert ConstantLengths(3, 4).sample(2, rng())[0].tolist() == [3, 3]


@pytest.mark.parametrize("lengths", [FittedLengths.builtin("azure-conv-2023"),
                                     LognormalLengths(400.0, 1.0, 150.0, 1.2)])
def test_skipping_the_start_leaves_out_only_the_requests_before_it(lengths: Any) -> None:
    arrivals = Diurnal(20.0, amplitude=0.5, period_s=600.0)
    full = generate(arrivals, lengths, 900.0, np.random.default_rng(4), max_total_tokens=2048)
    tail = generate(arrivals, lengths, 900.0, np.random.default_rng(4), max_total_tokens=2048,
                    skip_before_s=500.0)
    kept = full.arrival_s >= 500.0
    assert 0 < kept.sum() < len(full)
    np.testing.assert_array_equal(tail.arrival_s, full.arrival_s[kept])
    np.testing.assert_array_equal(tail.prompt_tokens, full.prompt_tokens[kept])
    np.testing.assert_array_equal(tail.output_tokens, full.output_tokens[kept])
    assert len(generate(arrivals, lengths, 900.0, np.random.default_rng(4),
                        skip_before_s=900.0)) == 0
