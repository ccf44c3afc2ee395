"""What an observation is built for: the pools (static facts used for normalization) and the SLO.

Shared by the observation builder, the interval statistics, the policies (through
:class:`~rlscale.agents.policy.PolicyContext`) and the bundle format, which stores every field.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlscale.metrics.features import FEATURE_VERSIONS


@dataclass(frozen=True)
class PoolInfo:
    """Static facts about one pool, used for normalization.

    Attributes:
        name: pool (Deployment) name, as in :class:`~rlscale.metrics.snapshot.PoolStatus`.
        gpu_type: the GPU type its pods need; gpus_per_replica: GPUs per pod.
        max_replicas: the most replicas an autoscaler may set (>= 1).
        max_num_seqs: vLLM's ``--max-num-seqs`` (running requests per replica at most).
        price_per_replica_hour: US dollars per replica-hour.
        capacity_rps: nominal requests/s one replica serves within the SLO.
        gpu_inventory: GPUs of its type in the cluster.
        prefill_tok_s: prompt tokens/s one replica prefills at full steps (from its profile;
            :func:`rlscale.sim.capacity.replica_prefill_tok_s`); 0 = unknown.
        decode_tok_s: generated tokens/s one replica sustains within the inter-token SLO (from
            its profile; :func:`rlscale.sim.capacity.replica_decode_tok_s`); 0 = unknown.
            Feature version 2 needs both; version 1 and the heuristics do not use them.
    """

    name: str
    gpu_type: str
    gpus_per_replica: int
    max_replicas: int
    max_num_seqs: int
    price_per_replica_hour: float
    capacity_rps: float
    gpu_inventory: int
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0

    def __post_init__(self) -> None:
        problems = [(field, f"{field} must be {rule}, got {value}")
                    for field, value, ok, rule in (
            ("gpus_per_replica", self.gpus_per_replica, self.gpus_per_replica >= 1, ">= 1"),
            ("max_replicas", self.max_replicas, self.max_replicas >= 1, ">= 1"),
            ("max_num_seqs", self.max_num_seqs, self.max_num_seqs >= 1, ">= 1"),
            ("price_per_replica_hour", self.price_per_replica_hour,
             self.price_per_replica_hour >= 0, ">= 0"),
            ("capacity_rps", self.capacity_rps, self.capacity_rps > 0, "> 0"),
            ("gpu_inventory", self.gpu_inventory, self.gpu_inventory >= 0, ">= 0"),
            ("prefill_tok_s", self.prefill_tok_s, self.prefill_tok_s >= 0, ">= 0"),
            ("decode_tok_s", self.decode_tok_s, self.decode_tok_s >= 0, ">= 0"),
        ) if not ok]
        if problems:
            raise PoolInfoError(self.name, problems)


class PoolInfoError(ValueError):
    """A :class:`PoolInfo` field out of its bounds; ``fields`` names each one, in order, so
    that a config reader can point at the first (``pools[0].capacity_rps``)."""

    def __init__(self, pool: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(f"pool {pool!r}: " + "; ".join(text for _, text in problems))
        self.fields = tuple(field for field, _ in problems)


@dataclass(frozen=True)
class ObservationConfig:
    """What the observation is built for: the pools (in observation order) and the SLO.

    Attributes:
        pools: one :class:`PoolInfo` per pool; names must be unique.
        slo_ttft_s: time-to-first-token SLO (s); slo_itl_s: inter-token latency SLO (s).
        long_window_s: span of the long arrival-rate window (s).
        day_length_s: period of the time-of-day features (s; 86400 for a real day).
        feature_version: which entries the observation has
            (:data:`rlscale.metrics.features.FEATURE_VERSIONS`): 1, load as requests/s against
            ``capacity_rps`` (bundles written before version 2, and configs that give no token
            capacities); 2, load as prompt and generated tokens/s against each pool's
            ``prefill_tok_s`` and ``decode_tok_s``.
    """

    pools: tuple[PoolInfo, ...]
    slo_ttft_s: float
    slo_itl_s: float
    long_window_s: float = 300.0
    day_length_s: float = 86400.0
    feature_version: int = 1

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("observation config: at least one pool is needed")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"observation config: pool names must be unique, got {names}")
        for field in ("slo_ttft_s", "slo_itl_s", "long_window_s", "day_length_s"):
            value = getattr(self, field)
            if not value > 0:
                raise ValueError(f"observation config: {field} must be > 0, got {value}")
        if self.feature_version not in FEATURE_VERSIONS:
            raise ValueError(f"observation config: feature_version must be one of "
                             f"{sorted(FEATURE_VERSIONS)}, got {self.feature_version}")
        if self.feature_version == 2:
            missing = [p.name for p in self.pools if not (p.prefill_tok_s > 0
                                                           and p.decode_tok_s > 0)]
            if missing:
                raise ValueError(f"observation config: feature_version 2 needs prefill_tok_s "
                                 f"and decode_tok_s > 0 for every pool; missing for {missing}")
