"""Build a :class:`Workload` from a YAML-style mapping (the ``workload:`` section of a scenario).

Two shapes are accepted (unknown keys are errors)::

    # replay a trace
    trace: traces/AzureLLMInferenceTrace_conv.csv   # relative to base_dir
    model: ChatGPT                     # optional, BurstGPT only
    window: {start_s: 600, duration_s: 1800}        # optional, on the trace's clock
    time_scale: 2                      # optional, replay 2x faster
    rate_scale: 0.5                    # optional, keep 50 % of requests (> 1 adds copies)
    lengths: azure-code-2023           # optional, replace the trace's lengths
    max_total_tokens: 8192             # optional

    # synthesize
    generator: {kind: diurnal, mean_rate_per_s: 5, amplitude: 0.5, period_s: 3600}
                                       # or a list of generators, superposed
    flash_crowd: {multiplier: 4, start_s: 600, duration_s: 120}   # optional, or a list
    lengths: azure-conv-2023           # or {trace: path, model: ...}
                                       # or {prompt_tokens: 512, output_tokens: 128}
                                       # or {lognormal: {prompt_mean: 4500, prompt_cv: 0.8,
                                       #                 output_mean: 250, output_cv: 1.0}}
    duration_s: 3600
    max_total_tokens: 8192             # optional

Generator kinds: ``poisson`` (rate_per_s), ``gamma`` (rate_per_s, cv), ``diurnal``
(mean_rate_per_s, amplitude, period_s, phase_s = 0, noise_cv = 0, noise_bucket_s = 60).
A trace is processed in the order window -> time_scale -> rate_scale -> lengths -> cap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.configschema import MAX_RATE_PER_S, MAX_SPAN_S
from rlscale.sim.workload.generators import (
    ArrivalProcess,
    Diurnal,
    FlashCrowd,
    GammaRenewal,
    Poisson,
    Superpose,
    generate,
)
from rlscale.sim.workload.lengths import (
    ConstantLengths,
    FittedLengths,
    LengthModel,
    LognormalLengths,
    TraceLengths,
    builtin_length_models,
)
from rlscale.sim.workload.traces import read_trace
from rlscale.sim.workload.transforms import cap_total_tokens, rate_scaled, time_scaled, window
from rlscale.sim.workload.workload import Workload

__all__ = ["WorkloadConfigError", "workload_from_config"]


class WorkloadConfigError(ValueError):
    """A workload configuration is invalid; the message names the field path, e.g.
    ``workload.generator.cv: expected a number > 0, got -1``."""


_TRACE_KEYS = (
    "trace",
    "model",
    "window",
    "time_scale",
    "rate_scale",
    "lengths",
    "max_total_tokens",
)
_GENERATOR_KEYS = ("generator", "flash_crowd", "lengths", "duration_s", "max_total_tokens")


def _err(path: str, expected: str, value: object) -> WorkloadConfigError:
    return WorkloadConfigError(f"{path}: expected {expected}, got {value!r}")


def _mapping(value: object, path: str, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(path, f"a mapping ({what})", value)
    for key in value:
        if key not in allowed:
            raise WorkloadConfigError(
                f"{path}: unknown key {key!r}; valid keys: {', '.join(allowed)}"
            )
    return {str(k): v for k, v in value.items()}


def _required(cfg: dict[str, Any], key: str, path: str) -> object:
    if key not in cfg:
        raise WorkloadConfigError(f"{path}: missing required key {key!r}")
    return cfg[key]


def _number(
    cfg: dict[str, Any],
    key: str,
    path: str,
    *,
    check: Callable[[float], bool] = math.isfinite,
    expected: str = "a number",
    default: float | None = None,
) -> float:
    if key not in cfg and default is not None:
        return default
    value = _required(cfg, key, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _err(f"{path}.{key}", expected, value)
    if not check(float(value)):
        raise _err(f"{path}.{key}", expected, value)
    high = _upper_bound(key)
    if value > high:
        raise _err(f"{path}.{key}", f"{expected} and <= {high:g}", value)
    return float(value)


def _upper_bound(key: str) -> float:
    """The largest sane value of a field, by its name: durations (``*_s``) at most
    :data:`MAX_SPAN_S`, request rates at most :data:`MAX_RATE_PER_S`, scales at most 1000."""
    if key.endswith("_s"):
        return MAX_SPAN_S
    if "rate_per_s" in key:
        return MAX_RATE_PER_S
    if key.endswith("scale"):
        return 1000.0
    return math.inf


def _positive(cfg: dict[str, Any], key: str, path: str, default: float | None = None) -> float:
    return _number(cfg, key, path, check=lambda x: x > 0, expected="a number > 0", default=default)


def _non_negative(cfg: dict[str, Any], key: str, path: str, default: float | None = None) -> float:
    return _number(
        cfg, key, path, check=lambda x: x >= 0, expected="a number >= 0", default=default
    )


def _int_at_least(cfg: dict[str, Any], key: str, path: str, minimum: int) -> int:
    value = _required(cfg, key, path)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(f"{path}.{key}", f"an integer >= {minimum}", value)
    return value


def _string(cfg: dict[str, Any], key: str, path: str) -> str:
    value = _required(cfg, key, path)
    if not isinstance(value, str) or not value.strip():
        raise _err(f"{path}.{key}", "a non-empty string", value)
    return value


def _file(cfg: dict[str, Any], key: str, path: str, base_dir: Path | None) -> Path:
    file = Path(_string(cfg, key, path)).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    if not file.is_file():
        raise WorkloadConfigError(f"{path}.{key}: trace file not found: {file}")
    return file


_KINDS: dict[str, tuple[str, ...]] = {
    "poisson": ("kind", "rate_per_s"),
    "gamma": ("kind", "rate_per_s", "cv"),
    "diurnal": (
        "kind",
        "mean_rate_per_s",
        "amplitude",
        "period_s",
        "phase_s",
        "noise_cv",
        "noise_bucket_s",
    ),
}


def _generator(value: object, path: str) -> ArrivalProcess:
    if not isinstance(value, Mapping):
        raise _err(path, f"a mapping with 'kind' (one of {', '.join(_KINDS)})", value)
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise _err(f"{path}.kind", f"one of {', '.join(_KINDS)}", kind)
    cfg = _mapping(value, path, _KINDS[kind], f"generator of kind {kind!r}")
    if kind == "poisson":
        return Poisson(_positive(cfg, "rate_per_s", path))
    if kind == "gamma":
        return GammaRenewal(_positive(cfg, "rate_per_s", path), _positive(cfg, "cv", path))
    return Diurnal(
        mean_rate_per_s=_positive(cfg, "mean_rate_per_s", path),
        amplitude=_number(
            cfg, "amplitude", path, check=lambda x: 0 <= x <= 1, expected="a number in [0, 1]"
        ),
        period_s=_positive(cfg, "period_s", path),
        phase_s=_number(cfg, "phase_s", path, default=0.0),
        noise_cv=_non_negative(cfg, "noise_cv", path, default=0.0),
        noise_bucket_s=_positive(cfg, "noise_bucket_s", path, default=60.0),
    )


def _items(value: object, path: str) -> list[tuple[object, str]]:
    """A mapping or a non-empty list of mappings, with each element's field path."""
    if isinstance(value, list):
        if not value:
            raise _err(path, "a mapping or a non-empty list of mappings", value)
        return [(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return [(value, path)]


def _arrivals(cfg: dict[str, Any], path: str) -> ArrivalProcess:
    gens = [_generator(v, p) for v, p in _items(cfg["generator"], f"{path}.generator")]
    process: ArrivalProcess = gens[0] if len(gens) == 1 else Superpose(*gens)
    if "flash_crowd" in cfg:
        for value, p in _items(cfg["flash_crowd"], f"{path}.flash_crowd"):
            fc = _mapping(value, p, ("multiplier", "start_s", "duration_s"), "a flash crowd")
            process = FlashCrowd(
                process,
                _positive(fc, "multiplier", p),
                _non_negative(fc, "start_s", p),
                _positive(fc, "duration_s", p),
            )
    return process


def _lengths(value: object, path: str, base_dir: Path | None) -> LengthModel:
    names = builtin_length_models()
    if isinstance(value, str):
        if value not in names:
            raise _err(
                path,
                f"a built-in length model ({', '.join(names)}), "
                "{trace: path} or {prompt_tokens, output_tokens}",
                value,
            )
        return FittedLengths.builtin(value)
    if isinstance(value, Mapping) and "trace" in value:
        cfg = _mapping(value, path, ("trace", "model"), "a trace to resample lengths from")
        model = _string(cfg, "model", path) if "model" in cfg else None
        trace = read_trace(_file(cfg, "trace", path, base_dir), model=model)
        return TraceLengths(trace)
    if isinstance(value, Mapping) and "lognormal" in value:
        _mapping(value, path, ("lognormal",), "log-normal lengths")
        keys = ("prompt_mean", "prompt_cv", "output_mean", "output_cv")
        cfg = _mapping(value["lognormal"], f"{path}.lognormal", keys, "log-normal lengths")
        return LognormalLengths(*(_positive(cfg, k, f"{path}.lognormal") for k in keys))
    if isinstance(value, Mapping) and ("prompt_tokens" in value or "output_tokens" in value):
        cfg = _mapping(value, path, ("prompt_tokens", "output_tokens"), "constant lengths")
        return ConstantLengths(
            _int_at_least(cfg, "prompt_tokens", path, 1),
            _int_at_least(cfg, "output_tokens", path, 1),
        )
    raise _err(
        path,
        f"a built-in length model name ({', '.join(names)}), a mapping "
        "{trace: path[, model]} or {prompt_tokens, output_tokens}",
        value,
    )


def workload_from_config(
    cfg: Mapping[str, Any],
    rng: np.random.Generator,
    *,
    base_dir: Path | None = None,
    path: str = "workload",
    skip_before_s: float = 0.0,
) -> Workload:
    """Build a workload from a configuration mapping (format: see the module docstring).

    Args:
        cfg: the mapping, e.g. the ``workload:`` section of a scenario YAML.
        rng: source of randomness (generators, rate scaling, length sampling).
        base_dir: directory relative trace paths are resolved against (e.g. the scenario
            file's folder); the current directory if None.
        path: name of ``cfg`` in error messages.
        skip_before_s: a generated workload leaves out the requests arriving before it
            (seconds; the others the same, see :func:`~rlscale.sim.workload.generators.
            generate`); a trace keeps them.

    Raises:
        WorkloadConfigError: a field is missing, unknown, or out of range; the message names
            its path (``workload.generator.cv``) and what is valid.
        TraceFormatError: a trace file is malformed.
    """
    if not isinstance(cfg, Mapping):
        raise _err(path, "a mapping with either 'trace' or 'generator'", cfg)
    if ("trace" in cfg) == ("generator" in cfg):
        raise WorkloadConfigError(
            f"{path}: expected exactly one of 'trace' (replay a file) or 'generator' "
            f"(synthesize), got keys {sorted(map(str, cfg))}"
        )
    try:
        if "trace" in cfg:
            return _from_trace(
                _mapping(cfg, path, _TRACE_KEYS, "a trace workload"), rng, base_dir, path
            )
        return _from_generator(
            _mapping(cfg, path, _GENERATOR_KEYS, "a generated workload"), rng, base_dir, path,
            skip_before_s,
        )
    except WorkloadConfigError:
        raise
    except ValueError as err:
        if type(err) is not ValueError:  # TraceFormatError etc. already say where
            raise
        raise WorkloadConfigError(f"{path}: {err}") from None


def _cap(cfg: dict[str, Any], path: str) -> int | None:
    return _int_at_least(cfg, "max_total_tokens", path, 2) if "max_total_tokens" in cfg else None


def _from_trace(
    cfg: dict[str, Any], rng: np.random.Generator, base_dir: Path | None, path: str
) -> Workload:
    # Validate every field before reading the (possibly large) trace.
    model = _string(cfg, "model", path) if "model" in cfg else None
    cap = _cap(cfg, path)
    win: tuple[float, float] | None = None
    if "window" in cfg:
        raw = _mapping(cfg["window"], f"{path}.window", ("start_s", "duration_s"), "a window")
        win = (
            _non_negative(raw, "start_s", f"{path}.window"),
            _positive(raw, "duration_s", f"{path}.window"),
        )
    time_scale = _positive(cfg, "time_scale", path) if "time_scale" in cfg else None
    rate_scale = _positive(cfg, "rate_scale", path) if "rate_scale" in cfg else None
    lengths = _lengths(cfg["lengths"], f"{path}.lengths", base_dir) if "lengths" in cfg else None
    w = read_trace(_file(cfg, "trace", path, base_dir), model=model)
    if win is not None:
        span = w.duration_s
        w = window(w, *win)
        if len(w) == 0:
            raise WorkloadConfigError(
                f"{path}.window: selects no requests; the trace's arrivals span 0-{span:.1f} s"
            )
    if time_scale is not None:
        w = time_scaled(w, time_scale)
    if rate_scale is not None:
        w = rate_scaled(w, rate_scale, rng)
    if lengths is not None:
        prompt, output = lengths.sample(len(w), rng)
        meta = {**w.metadata, "lengths": repr(lengths)}
        w = Workload(w.arrival_s, prompt, output, w.source, meta)
    return cap_total_tokens(w, cap) if cap is not None else w


def _from_generator(
    cfg: dict[str, Any], rng: np.random.Generator, base_dir: Path | None, path: str,
    skip_before_s: float = 0.0,
) -> Workload:
    arrivals = _arrivals(cfg, path)
    cap = _cap(cfg, path)
    duration = _positive(cfg, "duration_s", path)
    lengths = _lengths(_required(cfg, "lengths", path), f"{path}.lengths", base_dir)
    return generate(arrivals, lengths, duration, rng, max_total_tokens=cap,
                    skip_before_s=skip_before_s)
