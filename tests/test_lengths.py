"""Length models: the fitted Azure 2023 models against the real traces, trace resampling,
constant lengths and the total-token cap."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlscale.sim.workload import (
    ConstantLengths,
    FittedLengths,
    LengthModel,
    QuantileMarginal,
    TraceLengths,
    Workload,
    builtin_length_models,
    cap_lengths,
    read_trace,
)

TRACES = Path(__file__).resolve().parents[2] / "shared/data/traces"
needs_traces = pytest.mark.skipif(
    not (TRACES / "AzureLLMInferenceTrace_conv.csv").is_file(),
    reason=f"Azure LLM inference traces not found in {TRACES} (expected shared/ beside the repo)",
)
FITTED_YAML = resources.files("rlscale.sim.workload").joinpath("fitted_lengths.yaml")
FILES = {
    "azure-conv-2023": "AzureLLMInferenceTrace_conv.csv",
    "azure-code-2023": "AzureLLMInferenceTrace_code.csv",
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_builtin_names() -> None:
    assert builtin_length_models() == ["azure-code-2023", "azure-conv-2023"]
    with pytest.raises(
        ValueError,
        match=r"unknown length model 'gpt'; built-in models: "
        r"azure-code-2023, azure-conv-2023",
    ):
        FittedLengths.builtin("gpt")


@pytest.mark.parametrize("name", sorted(FILES))
def test_fitted_model_reproduces_recorded_fit_quality(name: str) -> None:
    """Without trace files: samples match the real-trace figures recorded in the YAML."""
    recorded = yaml.safe_load(FITTED_YAML.read_text())[name]["fit_quality"]
    prompt, output = FittedLengths.builtin(name).sample(200_000, rng(1))
    for values, key in ((prompt, "prompt_tokens"), (output, "output_tokens")):
        real = recorded[key]
        assert np.mean(values) == pytest.approx(real["mean"]["real"], rel=0.03)
        assert np.percentile(values, 50) == pytest.approx(real["p50"]["real"], rel=0.05)
        assert np.percentile(values, 90) == pytest.approx(real["p90"]["real"], rel=0.05)
        assert np.percentile(values, 99) == pytest.approx(real["p99"]["real"], rel=0.05)


@needs_traces
@pytest.mark.parametrize("name", sorted(FILES))
def test_fitted_model_matches_real_trace(name: str) -> None:
    trace = read_trace(TRACES / FILES[name])
    prompt, output = FittedLengths.builtin(name).sample(200_000, rng(2))
    for fitted, real in ((prompt, trace.prompt_tokens), (output, trace.output_tokens)):
        assert fitted.dtype == np.int64
        assert fitted.min() >= real.min()
        assert fitted.max() <= real.max()
        assert np.mean(fitted) == pytest.approx(np.mean(real), rel=0.03)
        for q in (50, 90, 99):
            assert np.percentile(fitted, q) == pytest.approx(np.percentile(real, q), rel=0.05)
    total_fit, total_real = prompt + output, trace.prompt_tokens + trace.output_tokens
    for q in (50, 90):
        assert np.percentile(total_fit, q) == pytest.approx(np.percentile(total_real, q), rel=0.05)


@needs_traces
def test_fitted_conv_keeps_the_non_monotone_dependence() -> None:
    """In the conversation trace mid-length prompts (~1,000 tokens) get ~400-token answers and
    short or long prompts ~60-160; an independent model would give ~130 everywhere."""
    trace = read_trace(TRACES / FILES["azure-conv-2023"])
    prompt, output = FittedLengths.builtin("azure-conv-2023").sample(200_000, rng(3))
    edges = np.quantile(trace.prompt_tokens, [0.1 * k for k in range(1, 10)])
    real_bin = np.searchsorted(edges, trace.prompt_tokens, side="left")
    fit_bin = np.searchsorted(edges, prompt, side="left")
    for k in (0, 5, 9):
        real_median = np.median(trace.output_tokens[real_bin == k])
        fit_median = np.median(output[fit_bin == k])
        assert fit_median == pytest.approx(real_median, rel=0.1)
    mid = np.median(output[(prompt > 900) & (prompt < 1200)])
    assert mid > 300


def test_fitted_sampling_is_deterministic_and_capped() -> None:
    model = FittedLengths.builtin("azure-conv-2023", max_total_tokens=2048)
    a = model.sample(50_000, rng(4))
    b = model.sample(50_000, rng(4))
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    assert (a[0] + a[1]).max() <= 2048
    assert a[0].min() >= 1
    assert a[1].min() >= 1
    assert isinstance(model, LengthModel)
    empty = model.sample(0, rng())
    assert empty[0].shape == (0,)


def test_trace_lengths_resample_pairs_jointly() -> None:
    w = Workload(
        np.arange(4, dtype=np.float64),
        np.array([10, 200, 3000, 40], dtype=np.int64),
        np.array([1, 20, 300, 4000], dtype=np.int64),
        "t",
    )
    prompt, output = TraceLengths(w).sample(10_000, rng(5))
    pairs = set(zip(prompt.tolist(), output.tolist(), strict=True))
    assert pairs == {(10, 1), (200, 20), (3000, 300), (40, 4000)}
    assert np.count_nonzero(prompt == 3000) == pytest.approx(2500, abs=200)
    capped_p, capped_o = TraceLengths(w, max_total_tokens=1000).sample(1000, rng(5))
    assert (capped_p + capped_o).max() <= 1000
    assert set(capped_p.tolist()) == {10, 200, 700, 1}
    with pytest.raises(ValueError, match="is empty"):
        TraceLengths(Workload(np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), "e"))


def test_constant_lengths() -> None:
    prompt, output = ConstantLengths(512, 128).sample(3, rng())
    assert prompt.tolist() == [512, 512, 512]
    assert output.tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="prompt_tokens must be an integer >= 1, got 0"):
        ConstantLengths(0, 1)


def test_cap_lengths_examples() -> None:
    prompt = np.array([100, 8000, 9000, 1, 4096], dtype=np.int64)
    output = np.array([50, 500, 9000, 9000, 4096], dtype=np.int64)
    p, o = cap_lengths(prompt, output, 8192)
    assert p.tolist() == [100, 7692, 1, 1, 4096]
    assert o.tolist() == [50, 500, 8191, 8191, 4096]
    with pytest.raises(ValueError, match="max_total_tokens must be an integer >= 2"):
        cap_lengths(prompt, output, 1)


def test_quantile_marginal_interpolates_in_log_space() -> None:
    m = QuantileMarginal((0.1, 0.5, 0.9), (10.0, 100.0, 1000.0))
    z = np.array([-10.0, 0.0, 10.0, -1.2815515655446004 / 2])
    assert m.tokens_at(z).tolist() == [10, 100, 1000, 32]  # sqrt(10 * 100) = 31.6
    with pytest.raises(ValueError, match="strictly increasing"):
        QuantileMarginal((0.5, 0.5), (1.0, 2.0))
    with pytest.raises(ValueError, match="non-decreasing and >= 1"):
        QuantileMarginal((0.1, 0.5), (0.0, 2.0))
