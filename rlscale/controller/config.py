"""The controller's YAML: pools, the HTTPRoute, the policy, metric source, leader election.

Example (every field; defaults in comments)::

    interval_s: 30                 # seconds between decisions
    staleness_s: 90                # metrics older than this are stale (default 3 x interval_s)
    mode: act                      # act | shadow (decide and log, never write)
    slo: {ttft_s: 2.0, itl_s: 0.15}          # seconds; optional with a bundle
    observation: {long_window_s: 300, day_length_s: 86400}   # s; a bundle has its own
    pools:
      - name: h100                 # the pool name the policy knows
        namespace: llm
        deployment: vllm-h100
        min_replicas: 1
        max_replicas: 4
        # profile facts (needed for heuristics and for the fallback; a bundle brings its own):
        gpu_type: H100             # GPU type name, as in gpus.types values
        gpus_per_replica: 1
        max_num_seqs: 256          # vLLM --max-num-seqs
        price_per_replica_hour: 6.88   # US dollars
        capacity_rps: 12.0         # requests/s one replica serves within the SLO
        gpu_inventory: 4           # GPUs of this type in the cluster
        # prefill_tok_s / decode_tok_s: optional token capacities per replica (tokens/s; only
        # the token-load observation uses them, and a bundle brings its own)
    httproute:                     # optional: without it routing weights are left alone
      namespace: llm
      name: vllm
      backends: {vllm-h100: h100}  # backendRef (Service) name -> pool
    policy:
      bundle: /policies/ppo        # a policy bundle directory, or:
      # heuristic: planner
      knobs: {}                    # heuristic knobs (see rlscale.agents.baselines)
    fallback: {heuristic: planner, knobs: {}}
    shield: {max_scale_up: 4, max_scale_down: 2, block_scale_down_while_pending: true,
             range_margin: 0.25,
             slo_guard: {enter: 0.9, hold: 4}}  # a bundle only: while an interval's SLO
                                   # attainment < enter, at least the fallback's replicas and
                                   # its weights, until hold intervals meet it; false: off
    metrics:
      source: pods                 # pods (scrape every pod) | prometheus
      port: 8000                   # pods: the vLLM container port
      path: /metrics
      timeout_s: 2.0               # per scrape / per query
      max_workers: 16              # pods: concurrent scrapes
      # url: http://prometheus.monitoring:9090   # prometheus only
    gpus:
      node_label: nvidia.com/gpu.product   # node label holding the GPU model
      resource: nvidia.com/gpu             # extended resource counted
      types: {NVIDIA-H100-80GB-HBM3: H100} # label value -> gpu_type (default: identity)
      pod_scope: namespaces                # or cluster: whose pods' GPUs are subtracted
    leader_election:
      enabled: true
      name: rlscale-controller     # the Lease
      namespace: llm               # default: the first pool's namespace
      lease_duration_s: 15
      renew_deadline_s: 10
      retry_period_s: 2
      # identity: default the host name (the pod name in a cluster) plus a random suffix
    outside_writes:                # someone else changed replicas or weights we wrote
      rule: back_off               # back_off (leave it alone back_off_s) | override
      back_off_s: 600
      hpa: refuse                  # refuse: never scale a Deployment an HPA targets | ignore
    http: {address: 0.0.0.0, port: 8080}   # /metrics, /healthz, /readyz

With ``policy.bundle`` the observation (pools' profile facts, SLO, windows) comes from the
bundle, as it was trained; the config's profile facts, if given (all of them, on every pool),
are used by the fallback when the bundle cannot be loaded. ``min_replicas`` and
``max_replicas`` are always the operator's limits, enforced by the shield.

Every default lives in the dataclasses below and nowhere else: the parsers read them. Numbers
are bounded above as well as below (:data:`LIMITS`): a replica count, a rate or a duration out
of any plausible range is an error that names the field, never a run that exhausts memory.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from rlscale.agents.baselines import knobs_of
from rlscale.agents.shield import ShieldConfig
from rlscale.agents.slo_guard import DEFAULT_ENTER, GUARD_OFF, SloGuardConfig
from rlscale.configschema import MAX_REPLICAS, MAX_TOKENS_PER_S_PER_GPU, ConfigError, Section
from rlscale.controller.pod_scrape import PodScrapeSettings
from rlscale.controller.resources import PROFILE_FIELDS, GpuConfig, PoolConfig, RouteConfig
from rlscale.controller.source_registry import parse_metrics
from rlscale.controller.sources import SourceSettings
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo, PoolInfoError

Mode = Literal["act", "shadow"]
MODES: tuple[Mode, ...] = ("act", "shadow")
STALENESS_INTERVALS = 3.0
"""Without ``staleness_s``, metrics are stale after this many intervals."""

LIMITS: dict[str, float] = {
    "interval_s": 3600.0, "staleness_s": 86_400.0, "long_window_s": 7 * 86_400.0,
    "day_length_s": 366 * 86_400.0, "gpus_per_replica": 64, "max_num_seqs": 1_000_000,
    "price_per_replica_hour": 10_000.0, "capacity_rps": 1e6, "gpu_inventory": 1_000_000,
    "prefill_tok_s": 64 * MAX_TOKENS_PER_S_PER_GPU, "decode_tok_s": 64 * MAX_TOKENS_PER_S_PER_GPU,
    "lease_duration_s": 3600.0,
    "slo_s": 3600.0}
"""Upper bounds of the config's numbers (seconds, counts, requests/s, tokens/s per replica of up
to 64 GPUs, US dollars per hour)."""


@dataclass(frozen=True)
class PolicyConfig:
    """The primary policy: a bundle directory or a heuristic with knobs."""

    bundle: str | None = None
    heuristic: str | None = None
    knobs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FallbackConfig:
    """The heuristic that decides when the primary policy cannot be trusted."""

    heuristic: str = "planner"
    knobs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SloConfig:
    """Latency SLO: time to first token and inter-token latency, seconds."""

    ttft_s: float
    itl_s: float


@dataclass(frozen=True)
class PlausibilityConfig:
    """Margins over a pool's profile beyond which a pod's sample is left out
    (:mod:`rlscale.controller.plausibility`): completions per second at most
    ``request_factor x capacity_rps``, running at most ``running_factor x max_num_seqs``,
    waiting at most ``waiting_factor x max_num_seqs``, tokens at most ``tokens_per_s_per_gpu x
    gpus_per_replica`` per second, KV usage at most ``kv_max``. Rates are per wall second (a
    twin at ``--speed N`` writes N times the token bound into the config it generates)."""

    request_factor: float = 100.0
    running_factor: float = 4.0
    waiting_factor: float = 100.0
    tokens_per_s_per_gpu: float = MAX_TOKENS_PER_S_PER_GPU
    kv_max: float = 1.05


@dataclass(frozen=True)
class LeaderElectionConfig:
    """A ``coordination.k8s.io/v1`` Lease; durations in seconds (client-go's defaults)."""

    enabled: bool = True
    name: str = "rlscale-controller"
    namespace: str = "default"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    identity: str = ""
    """Empty: :func:`rlscale.controller.leader.default_identity` (host name plus a random
    suffix, unique per process)."""


@dataclass(frozen=True)
class OutsideWritesConfig:
    """What to do when someone else changed what this controller wrote
    (:mod:`rlscale.controller.outside_writes`).

    ``rule``: ``back_off`` leaves the changed pool (or the route) alone for ``back_off_s``
    seconds, ``override`` writes the decision anyway. ``hpa``: ``refuse`` never scales a
    Deployment that a HorizontalPodAutoscaler targets at start-up, ``ignore`` does.
    """

    rule: Literal["back_off", "override"] = "back_off"
    back_off_s: float = 600.0
    hpa: Literal["refuse", "ignore"] = "refuse"


@dataclass(frozen=True)
class HttpConfig:
    """The endpoint serving ``/metrics``, ``/healthz`` and ``/readyz`` (port 0: any free)."""

    address: str = "0.0.0.0"
    port: int = 8080


@dataclass(frozen=True)
class ControllerConfig:
    """The whole controller configuration (see the module docstring)."""

    pools: tuple[PoolConfig, ...]
    policy: PolicyConfig
    httproute: RouteConfig | None = None
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    slo: SloConfig | None = None
    interval_s: float = 30.0
    staleness_s: float = 90.0
    """Seconds (the parser defaults it to ``STALENESS_INTERVALS x interval_s``)."""
    mode: Mode = "act"
    metrics: SourceSettings = field(default_factory=PodScrapeSettings)
    """The metric source's settings (:mod:`rlscale.controller.source_registry`)."""
    gpus: GpuConfig = field(default_factory=GpuConfig)
    shield: ShieldConfig = field(default_factory=ShieldConfig)
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    outside_writes: OutsideWritesConfig = field(default_factory=OutsideWritesConfig)
    plausibility: PlausibilityConfig = field(default_factory=PlausibilityConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    long_window_s: float = 300.0
    day_length_s: float = 86400.0

    @property
    def pool_names(self) -> tuple[str, ...]:
        """Pool names in config (= observation) order."""
        return tuple(p.name for p in self.pools)

    @property
    def has_profiles(self) -> bool:
        """Whether the config gives every pool's profile facts and the SLO."""
        return self.slo is not None and all(p.profile is not None for p in self.pools)

    def observation_config(self) -> ObservationConfig:
        """The observation built from the config's facts (heuristics; bundle fallback)."""
        if self.slo is None or not self.has_profiles:
            raise ValueError("the config has no profile facts and SLO for every pool")
        return ObservationConfig(tuple(p.pool_info() for p in self.pools), self.slo.ttft_s,
                                 self.slo.itl_s, self.long_window_s, self.day_length_s)


# ---------------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike[str]) -> ControllerConfig:
    """Read and validate the controller YAML at ``path``.

    Raises:
        ConfigError: unreadable file, bad YAML, or a bad field (the message names it).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the config {path}: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return parse_config(data)


def parse_config(data: Any) -> ControllerConfig:
    """Validate parsed YAML (a mapping) into a :class:`ControllerConfig`."""
    root = Section(data, "")
    d = ControllerConfig
    interval_s = root.number("interval_s", d.interval_s, min_value=0.0, strict_min=True,
                             max_value=LIMITS["interval_s"])
    staleness_s = root.number("staleness_s", STALENESS_INTERVALS * interval_s, min_value=0.0,
                              strict_min=True, max_value=LIMITS["staleness_s"])
    mode: Mode = "act" if root.string("mode", d.mode, MODES) == "act" else "shadow"
    policy = _policy(root.section("policy"))
    pools = _pools(root, policy)
    names = [p.name for p in pools]
    slo = _slo(root, required=policy.bundle is None or any(p.profile for p in pools))
    observation = root.section("observation")
    long_window_s = observation.number("long_window_s", d.long_window_s, min_value=0.0,
                                       strict_min=True, max_value=LIMITS["long_window_s"])
    day_length_s = observation.number("day_length_s", d.day_length_s, min_value=0.0,
                                      strict_min=True, max_value=LIMITS["day_length_s"])
    observation.finish()
    route = _route(root, names)
    fallback_section = root.section("fallback")
    fallback = FallbackConfig(fallback_section.string("heuristic", FallbackConfig.heuristic),
                              fallback_section.mapping("knobs"))
    _check_heuristic(fallback_section, fallback.heuristic, fallback.knobs)
    fallback_section.finish()
    config = ControllerConfig(
        pools=pools, policy=policy, httproute=route, fallback=fallback, slo=slo,
        interval_s=interval_s, staleness_s=staleness_s, mode=mode,
        metrics=parse_metrics(root.section("metrics")), gpus=_gpus(root.section("gpus")),
        shield=_shield(root.section("shield")),
        leader_election=_leader(root.section("leader_election"), pools[0].namespace),
        outside_writes=_outside_writes(root.section("outside_writes")),
        plausibility=_plausibility(root.section("plausibility")),
        http=_http(root.section("http")), long_window_s=long_window_s,
        day_length_s=day_length_s)
    root.finish()
    if config.has_profiles:
        try:
            config.observation_config()
        except ValueError as err:
            raise ConfigError(f"pools: {err}") from None
    return config


def _policy(section: Section) -> PolicyConfig:
    bundle = section.optional_string("bundle")
    heuristic = section.optional_string("heuristic")
    if (bundle is None) == (heuristic is None):
        raise ConfigError(f"{section.where('bundle')}: give exactly one of policy.bundle (a "
                          f"bundle directory) or policy.heuristic (a heuristic name)")
    knobs = section.mapping("knobs")
    if bundle is not None and knobs:
        raise ConfigError(f"{section.where('knobs')}: knobs apply to a heuristic policy, not "
                          f"to a bundle")
    if heuristic is not None:
        _check_heuristic(section, heuristic, knobs)
    section.finish()
    return PolicyConfig(bundle, heuristic, knobs)


def _check_heuristic(section: Section, name: str, knobs: dict[str, Any]) -> None:
    try:
        valid = knobs_of(name)
    except ValueError as err:
        raise ConfigError(f"{section.where('heuristic')}: {err}") from None
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise ConfigError(f"{section.where('knobs')}: unknown knob(s) {unknown} for heuristic "
                          f"{name!r}; valid: {list(valid)}")


def _profile(s: Section, name: str, max_replicas: int) -> PoolInfo:
    """The pool's :data:`PROFILE_FIELDS`, read as :class:`PoolInfo` types them, each bounded by
    :data:`LIMITS` (and below by :class:`PoolInfo`'s own checks)."""
    facts: dict[str, Any] = {}
    for f in fields(PoolInfo):
        if f.name not in PROFILE_FIELDS:
            continue
        default = () if f.default is MISSING else (f.default,)  # a field with one is optional
        if f.type == "str":
            facts[f.name] = s.string(f.name, *default)
        elif f.type == "int":
            facts[f.name] = s.integer(f.name, *default, min_value=0,
                                      max_value=int(LIMITS[f.name]))
        else:
            facts[f.name] = s.number(f.name, *default, min_value=0.0, max_value=LIMITS[f.name])
    try:
        return PoolInfo(name=name, max_replicas=max_replicas, **facts)
    except PoolInfoError as err:  # a lower bound of PoolInfo's: point at its first field
        raise ConfigError(f"{s.where(err.fields[0])}: {err}") from None


def _pools(root: Section, policy: PolicyConfig) -> tuple[PoolConfig, ...]:
    sections = root.sections("pools")
    if not sections:
        raise ConfigError("pools: at least one pool is required")
    facts_needed = policy.bundle is None or any(
        s.has(key) for s in sections for key in PROFILE_FIELDS)
    why = ("a heuristic policy needs them" if policy.bundle is None else
           "profile facts are given for some pool, so every pool needs all of them")
    pools: list[PoolConfig] = []
    for s in sections:
        name = s.string("name")
        namespace = s.string("namespace")
        deployment = s.string("deployment")
        min_replicas = s.integer("min_replicas", min_value=0, max_value=MAX_REPLICAS)
        max_replicas = s.integer("max_replicas", min_value=max(1, min_replicas),
                                 max_value=MAX_REPLICAS)
        profile = None
        if facts_needed:
            missing = [f.name for f in fields(PoolInfo) if f.name in PROFILE_FIELDS
                       and f.default is MISSING and not s.has(f.name)]
            if missing:
                raise ConfigError(f"{s.where(missing[0])}: required field is missing ({why})")
            profile = _profile(s, name, max_replicas)
        s.finish()
        pools.append(PoolConfig(name, namespace, deployment, min_replicas, max_replicas,
                                profile))
    names = [p.name for p in pools]
    for i, pool in enumerate(pools):
        if names.index(pool.name) != i:
            raise ConfigError(f"pools[{i}].name: pool name {pool.name!r} is used twice")
        key = (pool.namespace, pool.deployment)
        if [(p.namespace, p.deployment) for p in pools].index(key) != i:
            raise ConfigError(f"pools[{i}].deployment: {pool.namespace}/{pool.deployment} "
                              f"belongs to another pool already")
    return tuple(pools)


def _slo(root: Section, required: bool) -> SloConfig | None:
    if not root.has("slo"):
        if required:
            raise ConfigError("slo: required field is missing (ttft_s and itl_s, seconds)")
        root.raw("slo")
        return None
    section = root.section("slo")
    slo = SloConfig(*(section.number(key, min_value=0.0, strict_min=True,
                                     max_value=LIMITS["slo_s"]) for key in ("ttft_s", "itl_s")))
    section.finish()
    return slo


def _route(root: Section, pools: list[str]) -> RouteConfig | None:
    if not root.has("httproute"):
        root.raw("httproute")
        return None
    section = root.section("httproute")
    route = RouteConfig(section.string("namespace"), section.string("name"),
                        section.mapping("backends"))
    for service, pool in route.backends.items():
        if pool not in pools:
            raise ConfigError(f"{section.where('backends')}.{service}: pool {pool!r} is not "
                              f"one of the pools {pools}")
    unrouted = [p for p in pools if not route.services_of(p)]
    if unrouted:
        raise ConfigError(f"{section.where('backends')}: no backendRef for pool(s) {unrouted} "
                          f"(map each Service name to its pool)")
    section.finish()
    return route


def _gpus(section: Section) -> GpuConfig:
    types = section.mapping("types")
    for key, value in types.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{section.where('types')}.{key}: expected a GPU type name, got "
                              f"{value!r}")
    scope = section.string("pod_scope", GpuConfig.pod_scope, ("namespaces", "cluster"))
    config = GpuConfig(section.string("node_label", GpuConfig.node_label),
                       section.string("resource", GpuConfig.resource), types,
                       "cluster" if scope == "cluster" else "namespaces")
    section.finish()
    return config


def _shield(section: Section) -> ShieldConfig:
    d = ShieldConfig
    config = ShieldConfig(
        max_scale_up=section.integer("max_scale_up", d.max_scale_up, min_value=1,
                                     max_value=MAX_REPLICAS),
        max_scale_down=section.integer("max_scale_down", d.max_scale_down, min_value=1,
                                       max_value=MAX_REPLICAS),
        block_scale_down_while_pending=section.boolean(
            "block_scale_down_while_pending", d.block_scale_down_while_pending),
        range_margin=section.number("range_margin", d.range_margin, min_value=0.0,
                                    max_value=100.0),
        slo_guard=_slo_guard(section))
    section.finish()
    return config


def _slo_guard(shield: Section) -> SloGuardConfig:
    """``shield.slo_guard``: ``{enter: 0.9, hold: 4}`` (defaults), or ``false`` (off)."""
    if shield.raw("slo_guard") is False:
        return GUARD_OFF
    section = shield.section("slo_guard")
    d = SloGuardConfig()
    config = SloGuardConfig(
        enter=section.number("enter", DEFAULT_ENTER, min_value=0.0, strict_min=True,
                             max_value=1.0),
        hold=section.integer("hold", d.hold, min_value=1, max_value=1000))
    section.finish()
    return config


def _leader(section: Section, namespace: str) -> LeaderElectionConfig:
    d = LeaderElectionConfig
    durations = {key: section.number(key, getattr(d, key), min_value=0.0, strict_min=True,
                                     max_value=LIMITS["lease_duration_s"])
                 for key in ("lease_duration_s", "renew_deadline_s", "retry_period_s")}
    config = LeaderElectionConfig(
        enabled=section.boolean("enabled", d.enabled), name=section.string("name", d.name),
        namespace=section.string("namespace", namespace), **durations,
        identity=section.string("identity", d.identity))
    if not config.renew_deadline_s < config.lease_duration_s:
        raise ConfigError(f"{section.where('renew_deadline_s')}: must be below "
                          f"lease_duration_s ({config.lease_duration_s:g} s), got "
                          f"{config.renew_deadline_s:g}")
    if not config.retry_period_s < config.renew_deadline_s:
        raise ConfigError(f"{section.where('retry_period_s')}: must be below "
                          f"renew_deadline_s ({config.renew_deadline_s:g} s), got "
                          f"{config.retry_period_s:g}")
    section.finish()
    return config


def _plausibility(section: Section) -> PlausibilityConfig:
    d = PlausibilityConfig
    config = PlausibilityConfig(**{
        name: section.number(name, getattr(d, name), min_value=0.0, strict_min=True,
                             max_value=1e12)
        for name in ("request_factor", "running_factor", "waiting_factor",
                     "tokens_per_s_per_gpu", "kv_max")})
    section.finish()
    return config


def _outside_writes(section: Section) -> OutsideWritesConfig:
    d = OutsideWritesConfig
    rule = section.string("rule", d.rule, ("back_off", "override"))
    hpa = section.string("hpa", d.hpa, ("refuse", "ignore"))
    config = OutsideWritesConfig(
        "override" if rule == "override" else "back_off",
        section.number("back_off_s", d.back_off_s, min_value=0.0,
                       max_value=LIMITS["staleness_s"]),
        "ignore" if hpa == "ignore" else "refuse")
    section.finish()
    return config


def _http(section: Section) -> HttpConfig:
    config = HttpConfig(section.string("address", HttpConfig.address),
                        section.integer("port", HttpConfig.port, min_value=0, max_value=65535))
    section.finish()
    return config
