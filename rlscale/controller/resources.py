"""The Kubernetes objects the controller reads and writes, as its config names them.

A pool is a Deployment of vLLM pods with the operator's replica limits (and, optionally, the
facts its observation is normalized with); the HTTPRoute's backendRefs route traffic across
the pools; GPU nodes are counted for free GPUs. :mod:`rlscale.controller.config` parses them
from the YAML; the API reader (:mod:`rlscale.controller.cluster_state`), the metric sources
and the actuator use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from rlscale.metrics.observation_config import PoolInfo

PROFILE_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(PoolInfo) if f.name not in ("name", "max_replicas"))
"""A pool's profile facts in the config: the fields of :class:`PoolInfo` (same names and
units) less its name and ``max_replicas``, which the pool has anyway."""


@dataclass(frozen=True)
class PoolConfig:
    """One pool: its Deployment, the operator's replica limits and (optionally) its facts.

    ``profile`` is the pool as the observation builder sees it (None: the config gives no
    profile facts; a bundle brings its own). Its name and ``max_replicas`` are the pool's.
    """

    name: str
    namespace: str
    deployment: str
    min_replicas: int
    max_replicas: int
    profile: PoolInfo | None = None

    def __post_init__(self) -> None:
        if self.profile is not None and (self.profile.name, self.profile.max_replicas) != (
                self.name, self.max_replicas):
            raise ValueError(f"pool {self.name!r}: its profile is for pool "
                             f"{self.profile.name!r} with max_replicas "
                             f"{self.profile.max_replicas}")

    def pool_info(self) -> PoolInfo:
        """The pool as the observation builder sees it (needs the profile)."""
        if self.profile is None:
            raise ValueError(f"pool {self.name!r} has no profile facts in the config")
        return self.profile


@dataclass(frozen=True)
class RouteConfig:
    """The Gateway API HTTPRoute whose backendRef weights route traffic across pools.

    ``backends`` maps a backendRef (Service) name to the pool it serves.
    """

    namespace: str
    name: str
    backends: dict[str, str]

    def services_of(self, pool: str) -> tuple[str, ...]:
        """The backendRef names of ``pool``."""
        return tuple(s for s, p in self.backends.items() if p == pool)


@dataclass(frozen=True)
class GpuConfig:
    """How free GPUs are counted: nodes carrying ``node_label`` (its value mapped through
    ``types`` to a pool's ``gpu_type``; unmapped values are used as they are), their
    allocatable ``resource`` minus what scheduled pods (of ``pod_scope``) request."""

    node_label: str = "nvidia.com/gpu.product"
    resource: str = "nvidia.com/gpu"
    types: dict[str, str] = field(default_factory=dict)
    pod_scope: Literal["namespaces", "cluster"] = "namespaces"
    """Whose pods' GPUs are subtracted: the pools' namespaces' (a Role suffices; GPUs held in
    other namespaces look free) or the whole cluster's (needs a ClusterRole on pods)."""

    def gpu_type(self, label_value: str) -> str:
        """The pool GPU type of a node label value."""
        return self.types.get(label_value, label_value)
