"""Fit the built-in prompt/output length models to the Azure LLM inference traces of 2023.

Model (see ``rlscale.sim.workload.lengths.FittedLengths``): the prompt length's empirical
quantile function, and for each prompt-length decile bin the empirical quantile function of
the outputs of the requests in that bin. Quantiles are stored at a fixed grid of probabilities
plus Hazen plotting positions ``0.5/n`` and ``1 - 0.5/n``, which hold the minimum and maximum.

Goodness of fit: 1,000,000 pairs drawn from the fitted model (seed 0) against the trace:
mean, p50, p90, p99 of each length and of prompt + output, the Kolmogorov-Smirnov distance of
each marginal, the correlation of log lengths and the median output per prompt decile. A
bivariate lognormal (normal in log space, moments of the logs, clipped to [1, max]) is
printed as a baseline.

Data: Azure/AzurePublicDataset ``data/AzureLLMInferenceTrace_{conv,code}.csv``, CC-BY 4.0.
Cite: Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting",
ISCA 2024.

Usage::

    python benchmarks/fit_lengths.py [--traces DIR] \
        [--write rlscale/sim/workload/fitted_lengths.yaml]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from rlscale.sim.workload import FittedLengths, QuantileMarginal, read_trace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACES = REPO.parent / "shared/data/traces"
MODELS = {
    "azure-conv-2023": "AzureLLMInferenceTrace_conv.csv",
    "azure-code-2023": "AzureLLMInferenceTrace_code.csv",
}
PROMPT_GRID = [
    0.001,
    0.0025,
    0.005,
    *(round(0.01 * k, 2) for k in range(1, 100)),
    0.995,
    0.9975,
    0.999,
]
BIN_GRID = [0.005, 0.01, 0.025, *(round(0.05 * k, 2) for k in range(1, 20)), 0.975, 0.99, 0.995]
BINS = 10
SAMPLES = 1_000_000
STATS = {"mean": None, "p50": 50.0, "p90": 90.0, "p99": 99.0}


def marginal(x: NDArray[np.int64], grid: list[float]) -> QuantileMarginal:
    """Quantile knots of ``x`` at the grid plus the minimum and maximum (Hazen positions)."""
    h = 0.5 / len(x)
    probs = [h, *[p for p in grid if h < p < 1 - h], 1 - h]
    tokens = np.quantile(x, probs, method="hazen")
    return QuantileMarginal(tuple(probs), tuple(round(float(t), 1) for t in tokens))


def stat(x: NDArray[np.int64], key: str) -> float:
    q = STATS[key]
    return float(np.mean(x)) if q is None else float(np.percentile(x, q))


def ks(real: NDArray[np.int64], fitted: NDArray[np.int64]) -> float:
    """Kolmogorov-Smirnov distance between two integer samples' empirical CDFs."""
    grid = np.union1d(real, fitted)
    a = np.searchsorted(np.sort(real), grid, side="right") / len(real)
    b = np.searchsorted(np.sort(fitted), grid, side="right") / len(fitted)
    return float(np.max(np.abs(a - b)))


def quality(real: NDArray[np.int64], fitted: NDArray[np.int64]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in STATS:
        r, f = stat(real, key), stat(fitted, key)
        out[key] = {"real": round(r, 1), "fitted": round(f, 1), "rel_err": round(f / r - 1, 4)}
    out["ks_distance"] = round(ks(real, fitted), 4)
    return out


def log_corr(p: NDArray[np.int64], o: NDArray[np.int64]) -> float:
    return float(np.corrcoef(np.log(p), np.log(o))[0, 1])


def decile_medians(
    p: NDArray[np.int64], o: NDArray[np.int64], edges: NDArray[np.float64]
) -> list[float]:
    """Median output length among requests in each prompt-length bin."""
    bins = np.searchsorted(edges, p, side="left")
    return [float(np.median(o[bins == k])) for k in range(len(edges) + 1)]


def fit(name: str, path: Path) -> dict[str, Any]:
    w = read_trace(path)
    p, o = w.prompt_tokens, w.output_tokens
    edges = np.unique(np.quantile(p, [k / BINS for k in range(1, BINS)], method="inverted_cdf"))
    bins = np.searchsorted(edges, p, side="left")
    outputs = tuple(marginal(o[bins == k], BIN_GRID) for k in range(len(edges) + 1))
    model = FittedLengths(
        name, marginal(p, PROMPT_GRID), outputs, prompt_edges=tuple(float(e) for e in edges)
    )
    fp, fo = model.sample(SAMPLES, np.random.default_rng(0))

    rng = np.random.default_rng(0)
    mu = [np.log(p).mean(), np.log(o).mean()]
    cov = np.cov(np.log(p), np.log(o))
    base = np.exp(rng.multivariate_normal(mu, cov, size=SAMPLES))
    bp, bo = (
        np.clip(np.rint(base[:, k]), 1, real.max()).astype(np.int64) for k, real in ((0, p), (1, o))
    )
    print(f"# {name}: lognormal baseline (for comparison, not used)", file=sys.stderr)
    for label, real, b in (("prompt", p, bp), ("output", o, bo), ("total", p + o, bp + bo)):
        print(f"#   {label}: {quality(real, b)}", file=sys.stderr)
    print(
        f"#   log correlation {log_corr(bp, bo):.4f}, median output per prompt decile "
        f"{decile_medians(bp, bo, edges)}",
        file=sys.stderr,
    )

    return {
        "description": f"Azure LLM inference trace 2023-11-16, {name.split('-')[1]} service",
        "source": (
            f"Azure/AzurePublicDataset data/{path.name} (CC-BY 4.0); Patel et al., 'Splitwise: "
            "Efficient generative LLM inference using phase splitting', ISCA 2024"
        ),
        "fitted_on": datetime.date.today().isoformat(),
        "method": (
            "prompt: empirical quantile function; output: empirical quantile function of the "
            "outputs of the requests in the same prompt-length decile bin (bins split at "
            "prompt_tokens_max, inclusive). Quantiles (Hazen) at 'probs', the first and last "
            "being 0.5/n and 1-0.5/n (the min and max), interpolated linearly in "
            "(standard-normal score, log tokens). Fit by benchmarks/fit_lengths.py"
        ),
        "requests": len(w),
        "prompt_tokens": knots(model.prompt),
        "output_tokens_by_prompt_bin": [
            {
                "prompt_tokens_max": float(edges[k]) if k < len(edges) else float("inf"),
                "requests": int(np.count_nonzero(bins == k)),
                **knots(m),
            }
            for k, m in enumerate(model.outputs)
        ],
        "fit_quality": {
            "samples": SAMPLES,
            "prompt_tokens": quality(p, fp),
            "output_tokens": quality(o, fo),
            "total_tokens": quality(p + o, fp + fo),
            "log_correlation": {
                "real": round(log_corr(p, o), 4),
                "fitted": round(log_corr(fp, fo), 4),
            },
            "median_output_by_prompt_bin": {
                "real": decile_medians(p, o, edges),
                "fitted": decile_medians(fp, fo, edges),
            },
        },
    }


def knots(m: QuantileMarginal) -> dict[str, list[float]]:
    return {"probs": [float(f"{q:.6g}") for q in m.probs], "tokens": list(m.tokens)}


HEADER = """\
# Built-in prompt/output length models (rlscale.sim.workload.FittedLengths.builtin).
# GENERATED by benchmarks/fit_lengths.py from the Azure LLM inference traces of 2023-11-16
# (Azure/AzurePublicDataset, CC-BY 4.0; cite Patel et al., "Splitwise: Efficient generative LLM
# inference using phase splitting", ISCA 2024). Re-run the script rather than editing by hand.
# fit_quality compares 1e6 samples of the fitted model (seed 0) with the trace.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    parser.add_argument("--write", type=Path, help="write the YAML here instead of stdout")
    args = parser.parse_args(argv)
    table = {name: fit(name, args.traces / file) for name, file in MODELS.items()}
    text = HEADER + yaml.safe_dump(table, sort_keys=False, default_flow_style=None, width=96)
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
