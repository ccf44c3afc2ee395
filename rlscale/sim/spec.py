"""What a simulated cluster is made of: pools of replicas, GPU inventory, gateway behaviour, SLO."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlscale.sim.profile import ColdStart, PerformanceProfile


@dataclass(frozen=True)
class PoolSpec:
    """One pool: a Deployment of identical vLLM replicas of one (model, GPU type, TP) profile.

    Attributes:
        name: pool (Deployment) name, e.g. ``llama3-8b-h100``.
        profile: the replica's performance profile (engine settings already applied).
        min_replicas / max_replicas: the limits an autoscaler may move between.
        initial_replicas: replicas at time 0, ready (warm) unless ``start_cold``.
        routing_weight: initial share of traffic (normalized over pools with ready replicas).
        price_per_gpu_hour: US dollars per GPU-hour; defaults to the profile's price.
        cold_start: cold-start distribution; defaults to the profile's.
    """

    name: str
    profile: PerformanceProfile
    min_replicas: int = 0
    max_replicas: int = 8
    initial_replicas: int = 1
    routing_weight: float = 1.0
    price_per_gpu_hour: float | None = None
    cold_start: ColdStart | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"pool {self.name!r}: need 0 <= min_replicas <= max_replicas, "
                f"got {self.min_replicas} and {self.max_replicas}"
            )
        if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(
                f"pool {self.name!r}: initial_replicas {self.initial_replicas} is outside "
                f"[{self.min_replicas}, {self.max_replicas}]"
            )
        if self.routing_weight < 0:
            raise ValueError(f"pool {self.name!r}: routing_weight must be >= 0")

    @property
    def gpu_type(self) -> str:
        """The GPU type the pool's pods need (the profile's ``gpu``)."""
        return self.profile.gpu

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one replica occupies (its tensor-parallel degree)."""
        return self.profile.tensor_parallel

    @property
    def gpu_price(self) -> float:
        """US dollars per GPU-hour for this pool."""
        if self.price_per_gpu_hour is not None:
            return self.price_per_gpu_hour
        return self.profile.price_per_gpu_hour

    @property
    def replica_cold_start(self) -> ColdStart:
        """The cold-start distribution of this pool's pods."""
        return self.cold_start if self.cold_start is not None else self.profile.cold_start


@dataclass(frozen=True)
class ClusterSpec:
    """The cluster: pools, GPUs per type, and gateway (router) behaviour.

    Attributes:
        pools: the pools, in a fixed order (observation and action order).
        gpu_inventory: GPUs available per GPU type; pools of one type share them.
        gateway_timeout_s: how long a request waits at the gateway for a ready replica before
            it fails (seconds).
        drain_timeout_s: a draining pod's grace period (Kubernetes
            ``terminationGracePeriodSeconds``); requests still running then are dropped and
            counted as failed.
        routing: ``least_outstanding`` (default) or ``round_robin`` inside a pool.
        max_retries: times the gateway retries a request whose pod crashed.
        start_cold: initial replicas start cold (cold start from time 0) instead of ready.
    """

    pools: tuple[PoolSpec, ...]
    gpu_inventory: dict[str, int] = field(default_factory=dict)
    gateway_timeout_s: float = 60.0
    drain_timeout_s: float = 600.0
    routing: str = "least_outstanding"
    max_retries: int = 1
    start_cold: bool = False

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("cluster: at least one pool is needed")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster: pool names must be unique, got {names}")
        if self.routing not in ("least_outstanding", "round_robin"):
            raise ValueError(
                f"cluster: routing must be 'least_outstanding' or 'round_robin', "
                f"got {self.routing!r}"
            )
        for pool in self.pools:
            gpus = self.gpu_inventory.get(pool.gpu_type)
            if gpus is None:
                raise ValueError(
                    f"cluster: gpu_inventory has no entry for GPU type {pool.gpu_type!r} "
                    f"(needed by pool {pool.name!r})"
                )
        if self.gateway_timeout_s <= 0 or self.drain_timeout_s <= 0:
            raise ValueError("cluster: gateway_timeout_s and drain_timeout_s must be > 0")


@dataclass(frozen=True)
class SLO:
    """Service-level objective of one request: both thresholds must hold (seconds).

    ``itl_s`` bounds the request's mean inter-token latency (time per output token).
    """

    ttft_s: float = 2.0
    itl_s: float = 0.1

    def __post_init__(self) -> None:
        if self.ttft_s <= 0 or self.itl_s <= 0:
            raise ValueError(f"slo: ttft_s and itl_s must be > 0, got {self.ttft_s}, {self.itl_s}")
