"""Performance profiles: how fast one vLLM replica of (model, GPU type, tensor-parallel) runs.

A profile is a YAML file in ``rlscale/sim/profiles/`` (or any path). Every number in it carries a
citation in its ``sources`` mapping; ``derived`` explains numbers computed from cited inputs.

The iteration-time model of one engine step (one forward pass of a continuous batch) is::

    t_iter_s = overhead_s
             + prefill_s_per_token   * prefill_tokens_in_step
             + decode_s_per_seq      * decoding_sequences_in_step
             + context_s_per_token   * context_tokens_held_by_decoding_sequences

which is the roofline shape reported for vLLM: a fixed launch/scheduling cost, a compute-bound
term linear in prefill tokens, and memory-bound decode terms linear in batch size and in the KV
cache read by attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

GIB = 1024**3


class ProfileError(ValueError):
    """A profile file is missing, malformed, or has a field outside its valid range."""


@dataclass(frozen=True)
class ColdStart:
    """Distribution of a pod's time from scheduled to ready, in seconds.

    Lognormal with the given median and 95th percentile, floored at ``min_s``: a cold start
    is image pull + weight load + KV-cache profiling + CUDA-graph capture.
    """

    median_s: float
    p95_s: float
    min_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_s <= self.median_s <= self.p95_s:
            raise ProfileError(
                f"cold_start: need 0 <= min_s <= median_s <= p95_s, got min_s={self.min_s}, "
                f"median_s={self.median_s}, p95_s={self.p95_s}"
            )

    @property
    def sigma(self) -> float:
        """Log-space standard deviation implied by the median and 95th percentile."""
        if self.median_s <= 0 or self.p95_s <= self.median_s:
            return 0.0
        return math.log(self.p95_s / self.median_s) / 1.6448536269514722

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one cold-start duration in seconds."""
        if self.median_s <= 0:
            return self.min_s
        value = self.median_s * math.exp(self.sigma * float(rng.standard_normal()))
        return max(self.min_s, value)

    def scaled(self, factor: float) -> ColdStart:
        """The same shape stretched by ``factor`` (used by the slow-cold-start fault)."""
        return ColdStart(self.median_s * factor, self.p95_s * factor, self.min_s * factor)


@dataclass(frozen=True)
class PerformanceProfile:
    """One vLLM replica's hardware, engine configuration and speed.

    Memory figures are bytes; times are seconds; prices are US dollars per GPU-hour.
    ``weight_bytes`` and ``kv_bytes_per_token`` are totals over all tensor-parallel GPUs.
    """

    name: str
    model: str
    gpu: str
    tensor_parallel: int
    gpu_memory_bytes: float
    weight_bytes: float
    kv_bytes_per_token: float
    activation_reserve_bytes: float
    gpu_memory_utilization: float
    kv_block_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    enable_chunked_prefill: bool
    overhead_s: float
    prefill_s_per_token: float
    decode_s_per_seq: float
    context_s_per_token: float
    price_per_gpu_hour: float
    cold_start: ColdStart
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    derived: dict[str, str] = field(default_factory=dict, compare=False)
    reference: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        positive = {
            "tensor_parallel": self.tensor_parallel,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "weight_bytes": self.weight_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_block_size": self.kv_block_size,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_model_len": self.max_model_len,
            "overhead_s": self.overhead_s,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ProfileError(f"profile {self.name!r}: {key} must be > 0, got {value!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ProfileError(
                f"profile {self.name!r}: gpu_memory_utilization must be in (0, 1], "
                f"got {self.gpu_memory_utilization!r}"
            )
        for key in ("prefill_s_per_token", "decode_s_per_seq", "context_s_per_token",
                    "price_per_gpu_hour", "activation_reserve_bytes"):
            if getattr(self, key) < 0:
                raise ProfileError(f"profile {self.name!r}: {key} must be >= 0")
        if self.kv_capacity_tokens < self.kv_block_size:
            raise ProfileError(
                f"profile {self.name!r}: no room for the KV cache: "
                f"{self.gpu_memory_utilization} x {self.tensor_parallel} x "
                f"{self.gpu_memory_bytes / GIB:.1f} GiB minus weights "
                f"{self.weight_bytes / GIB:.1f} GiB minus activations leaves nothing"
            )
        if self.max_model_len > self.kv_capacity_tokens:
            raise ProfileError(
                f"profile {self.name!r}: max_model_len {self.max_model_len} is larger than the "
                f"{self.kv_capacity_tokens} tokens the KV cache holds (vLLM refuses to start); "
                f"lower max_model_len or raise gpu_memory_utilization"
            )
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ProfileError(
                f"profile {self.name!r}: without chunked prefill max_num_batched_tokens "
                f"({self.max_num_batched_tokens}) must be >= max_model_len ({self.max_model_len}) "
                f"so that every prompt fits one step (vLLM's SchedulerConfig check)"
            )

    @property
    def kv_cache_bytes(self) -> float:
        """Bytes left for the KV cache across all GPUs of the replica."""
        budget = self.gpu_memory_utilization * self.gpu_memory_bytes * self.tensor_parallel
        return budget - self.weight_bytes - self.activation_reserve_bytes * self.tensor_parallel

    @property
    def num_kv_blocks(self) -> int:
        """KV-cache blocks of ``kv_block_size`` tokens (what vLLM logs as '# GPU blocks')."""
        return max(0, int(self.kv_cache_bytes // (self.kv_bytes_per_token * self.kv_block_size)))

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens the KV cache holds when full."""
        return self.num_kv_blocks * self.kv_block_size

    @property
    def price_per_replica_hour(self) -> float:
        """US dollars per hour for one replica (all its GPUs)."""
        return self.price_per_gpu_hour * self.tensor_parallel

    def iteration_time_s(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Duration of one engine step with the given batch composition, in seconds."""
        return (
            self.overhead_s
            + self.prefill_s_per_token * prefill_tokens
            + self.decode_s_per_seq * decode_seqs
            + self.context_s_per_token * context_tokens
        )

    def with_overrides(self, **overrides: Any) -> PerformanceProfile:
        """A copy with engine settings changed, as vLLM's CLI flags would change them.

        Accepts any field name, e.g. ``max_num_seqs=128, max_num_batched_tokens=8192,
        gpu_memory_utilization=0.95, kv_block_size=32, enable_chunked_prefill=False``.
        Turning chunked prefill off without giving ``max_num_batched_tokens`` takes vLLM's
        default for that mode, ``max(max_model_len, 2048)``.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ProfileError(
                f"profile {self.name!r}: unknown setting(s) {unknown}; valid: {sorted(known)}"
            )
        if overrides.get("enable_chunked_prefill") is False and (
                "max_num_batched_tokens" not in overrides):
            max_model_len = overrides.get("max_model_len", self.max_model_len)
            overrides["max_num_batched_tokens"] = max(
                max_model_len, 2048, self.max_num_batched_tokens)
        return replace(self, **overrides)


PROFILE_DIR = "profiles"


def builtin_profile_names() -> list[str]:
    """Names of the profiles shipped with rlscale (file stems in ``rlscale/sim/profiles``)."""
    folder = resources.files("rlscale.sim").joinpath(PROFILE_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> PerformanceProfile:
    """Load a built-in profile by name (``llama-3-8b_a100-80gb``) or a profile YAML by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ProfileError(f"profile file {str(path)!r} does not exist")
        text = path.read_text()
        origin = str(path)
    else:
        name = str(name_or_path)
        if name not in builtin_profile_names():
            raise ProfileError(
                f"unknown profile {name!r}; built-in profiles: {', '.join(builtin_profile_names())}"
            )
        folder = resources.files("rlscale.sim").joinpath(PROFILE_DIR)
        text = folder.joinpath(f"{name}.yaml").read_text()
        origin = name
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ProfileError(f"profile {origin!r}: not valid YAML: {err}") from None
    return profile_from_dict(raw, origin)


_BYTE_FIELDS = {"gpu_memory_bytes": "gpu_memory_gib", "weight_bytes": "weight_gib",
                "activation_reserve_bytes": "activation_reserve_gib"}


def profile_from_dict(raw: Any, origin: str) -> PerformanceProfile:
    """Build a profile from parsed YAML; memory may be given in GiB (``*_gib`` keys)."""
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {origin!r}: expected a mapping at the top level")
    data = dict(raw)
    for byte_key, gib_key in _BYTE_FIELDS.items():
        if gib_key in data:
            data[byte_key] = float(data.pop(gib_key)) * GIB
    if "kv_kib_per_token" in data:
        data["kv_bytes_per_token"] = float(data.pop("kv_kib_per_token")) * 1024
    cold = data.pop("cold_start", None)
    if not isinstance(cold, dict):
        raise ProfileError(f"profile {origin!r}: cold_start must be a mapping with median_s, p95_s")
    known = {f.name for f in fields(PerformanceProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"profile {origin!r}: unknown field(s) {unknown}")
    required = known - {"sources", "derived", "reference", "cold_start"}
    missing = sorted(required - set(data))
    if missing:
        raise ProfileError(f"profile {origin!r}: missing field(s) {missing}")
    try:
        cold_start = ColdStart(**{k: float(v) for k, v in cold.items()})
        data["reference"] = tuple(data.get("reference", ()))
        return PerformanceProfile(cold_start=cold_start, **data)
    except TypeError as err:
        raise ProfileError(f"profile {origin!r}: {err}") from None
