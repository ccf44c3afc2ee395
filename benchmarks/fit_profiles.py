"""Check (and optionally re-fit) the built-in profiles against their published references.

Usage::

    python benchmarks/fit_profiles.py                             # all built-in profiles
    python benchmarks/fit_profiles.py llama-3-8b_a100-80gb --fit  # re-fit its free coefficients

For each ``reference`` entry of a profile the prediction comes from ``rlscale.sim.profile_fit``
(the same code the tests use): a deterministic replay of the published burst when the reference
lists per-request lengths, the steady-state formula otherwise. ``--fit`` runs Gauss-Newton on
the logarithm of the profile's free coefficients (``FREE`` below) to zero the log-errors of the
references marked ``fitted: true``; the other references are hold-out checks. Paste the printed
values (3 significant figures) into the YAML.

It also prints what the coefficients imply physically -- achieved HBM bandwidth for reading the
weights once per step, achieved FLOP/s for prefill -- against the GPU datasheets (``GPUS``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlscale.sim.profile import PerformanceProfile, builtin_profile_names, load_profile
from rlscale.sim.profile_fit import check_references, predict_reference


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet peak figures of one GPU (dense, no sparsity)."""

    hbm_bytes_per_s: float
    bf16_flop_per_s: float
    source: str


GPUS = {
    "A100-SXM4-80GB": GpuSpec(
        2.039e12, 312e12, "NVIDIA A100 Tensor Core GPU datasheet (2021): 2,039 GB/s, BF16 312 TF"
    ),
    "H100-SXM5-80GB": GpuSpec(
        3.35e12, 989e12, "NVIDIA H100 Tensor Core GPU datasheet (2023): 3.35 TB/s, BF16 989 TF"
    ),
    "L4": GpuSpec(
        300e9, 121e12, "NVIDIA L4 Tensor Core GPU datasheet (2023): 300 GB/s, BF16 121 TF"
    ),
}
"""Keyed by a profile's ``gpu`` field."""

FREE: dict[str, tuple[str, ...]] = {
    "llama-3-8b_a100-80gb": ("overhead_s", "prefill_s_per_token", "decode_s_per_seq"),
    "llama-3-8b_h100-80gb": ("overhead_s", "prefill_s_per_token", "decode_s_per_seq"),
    "llama-3-70b_h100-80gb-tp4": ("overhead_s", "prefill_s_per_token", "decode_s_per_seq"),
    "llama-2-7b_a100-80gb": ("decode_s_per_seq",),
}
"""Coefficients fitted per profile; the rest are set from physics (see each YAML's ``derived``)."""


def _fitted_refs(profile: PerformanceProfile) -> list[dict[str, object]]:
    return [dict(ref) for ref in profile.reference if ref.get("fitted", False)]


def fit(
    profile: PerformanceProfile, free: Sequence[str], iterations: int = 40
) -> tuple[PerformanceProfile, list[float]]:
    """Gauss-Newton on log-coefficients; returns the fitted profile and final log-errors."""
    refs = _fitted_refs(profile)
    if not refs:
        raise SystemExit(f"{profile.name}: no reference marked 'fitted: true'")
    targets = np.array([float(str(ref["value"])) for ref in refs])

    def make(x: np.ndarray) -> PerformanceProfile:
        return profile.with_overrides(**{k: float(v) for k, v in zip(free, np.exp(x), strict=True)})

    def residuals(x: np.ndarray) -> np.ndarray:
        candidate = make(x)
        predicted = np.array([predict_reference(candidate, ref) for ref in refs])
        return np.asarray(np.log(predicted / targets), dtype=np.float64)

    x = np.log([getattr(profile, k) for k in free])
    res = residuals(x)
    for _ in range(iterations):
        if float(np.max(np.abs(res))) < 1e-6:
            break
        jac = np.empty((res.size, x.size))
        for j in range(x.size):
            dx = np.zeros_like(x)
            dx[j] = 1e-4
            jac[:, j] = (residuals(x + dx) - res) / 1e-4
        step = np.linalg.lstsq(jac, -res, rcond=None)[0]
        x = x + np.clip(step, -0.5, 0.5)
        res = residuals(x)
    return make(x), [float(r) for r in res]


def physics(profile: PerformanceProfile) -> list[str]:
    """What the coefficients imply about achieved bandwidth and FLOP/s, per GPU."""
    spec = GPUS.get(profile.gpu)
    if spec is None:
        return [f"  (no datasheet figures for gpu {profile.gpu!r})"]
    tp = profile.tensor_parallel
    params = profile.weight_bytes / 2  # bf16 weights: 2 bytes per parameter
    weight_read_s = profile.weight_bytes / tp / spec.hbm_bytes_per_s
    prefill_flops = 2 * params / profile.prefill_s_per_token / tp
    decode_flops = 2 * params / profile.decode_s_per_seq / tp if profile.decode_s_per_seq else 0.0
    kv_s = profile.kv_bytes_per_token / tp / spec.hbm_bytes_per_s
    return [
        f"  overhead_s {profile.overhead_s * 1e3:.2f} ms vs weights/HBM "
        f"{weight_read_s * 1e3:.2f} ms -> {weight_read_s / profile.overhead_s:.0%} of peak "
        "bandwidth",
        f"  prefill {profile.prefill_s_per_token * 1e6:.1f} us/token -> "
        f"{prefill_flops / 1e12:.0f} TFLOP/s per GPU = {prefill_flops / spec.bf16_flop_per_s:.0%}"
        " of BF16 peak",
        f"  decode_s_per_seq {profile.decode_s_per_seq * 1e6:.1f} us -> 2*params FLOPs at "
        f"{decode_flops / spec.bf16_flop_per_s:.0%} of peak (plus per-sequence CPU work)",
        f"  context {profile.context_s_per_token * 1e9:.1f} ns/token vs KV/HBM {kv_s * 1e9:.1f} ns"
        f" -> {kv_s / profile.context_s_per_token:.0%} of peak bandwidth",
        f"  [{spec.source}]",
    ]


def report(profile: PerformanceProfile) -> float:
    """Print predicted vs published for one profile; return the worst absolute error."""
    print(
        f"\n{profile.name}  ({profile.model} on {profile.tensor_parallel} x {profile.gpu}, "
        f"KV {profile.kv_capacity_tokens:,} tokens)"
    )
    worst = 0.0
    fitted_flags = [bool(ref.get("fitted", False)) for ref in profile.reference]
    for check, fitted in zip(check_references(profile), fitted_flags, strict=True):
        worst = max(worst, abs(check.error))
        role = "fit" if fitted else "hold-out"
        print(
            f"  {check.metric:24s} published {check.published:10.4g}  predicted "
            f"{check.predicted:10.4g}  error {check.error:+6.1%}  ({role})"
        )
    if not profile.reference:
        print("  no published reference (coefficients from physics only)")
    for line in physics(profile):
        print(line)
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", help="profile names (default: all built-in)")
    parser.add_argument("--fit", action="store_true", help="re-fit the free coefficients")
    args = parser.parse_args(argv)
    names = args.profiles or builtin_profile_names()
    worst = 0.0
    for name in names:
        profile = load_profile(name)
        if args.fit and name in FREE:
            fitted, res = fit(profile, FREE[name])
            print(f"\n{name}: fitted (log-errors {[f'{r:+.1e}' for r in res]})")
            for key in FREE[name]:
                value = getattr(fitted, key)
                digits = 2 - math.floor(math.log10(abs(value)))
                print(f"  {key}: {round(value, digits):.3g}   (was {getattr(profile, key):.3g})")
            profile = fitted
        worst = max(worst, report(profile))
    print(f"\nworst reference error: {worst:.1%}")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
