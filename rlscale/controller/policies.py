"""The policy the controller runs: a bundle or a heuristic, behind the shield with its fallback.

* ``policy.heuristic``: the observation is built from the config's pools and SLO; the
  heuristic decides, the fallback heuristic stands in when its decision is invalid.
* ``policy.bundle``: the bundle is loaded and verified (numpy only); the observation is built
  from the bundle's ``observation_config`` (the same builder and normalization as in
  training), the shield falls back when the observation leaves the range seen in training
  or is unfamiliar, and its SLO guard lifts the decision to the fallback's while the SLO is
  missed (``shield.slo_guard``; a heuristic primary policy runs without the guard).
  The operator's ``min_replicas`` / ``max_replicas`` (config) are what the shield enforces.
* a bundle that cannot be loaded is logged; the fallback heuristic then runs on the config's
  profile facts and every decision says ``BundleLoadFailed``. Without profile facts in the
  config nothing can decide: the current state is kept, with the same reason.

Bad heuristic names or knob values are configuration errors (:class:`ConfigError`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from rlscale.agents.baselines import make_baseline
from rlscale.agents.bundle.format import BundleError
from rlscale.agents.familiarity import FamiliarityGate
from rlscale.agents.numpy_policy import BundlePolicy
from rlscale.agents.policy import (
    Decision,
    Policy,
    PolicyContext,
    PolicyInput,
    with_replica_limits,
)
from rlscale.agents.shield import Shield, ShieldConfig
from rlscale.agents.slo_guard import GUARD_OFF
from rlscale.configschema import ConfigError
from rlscale.controller.config import ControllerConfig
from rlscale.controller.resources import PROFILE_FIELDS
from rlscale.metrics.observation_config import ObservationConfig

log = logging.getLogger("rlscale.controller")


class TrackedPolicy:
    """A policy whose last decision is kept and whose exceptions become an invalid decision
    with reason ``PolicyError`` (so the loop can tell a crash from a refusal)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name
        self.last: Decision | None = None

    def reset(self) -> None:
        """Reset the wrapped policy."""
        self.policy.reset()

    def forget(self) -> None:
        """Forget the last decision (before asking again)."""
        self.last = None

    def decide(self, observed: PolicyInput) -> Decision:
        """The wrapped policy's decision, or an invalid one if it raised."""
        try:
            self.last = self.policy.decide(observed)
        except Exception as err:  # a failing policy must not stop the controller
            log.exception("policy %s raised", self.name)
            self.last = Decision(tuple(observed.desired),
                                 tuple(1.0 for _ in observed.desired), False, "PolicyError",
                                 f"{type(err).__name__}: {err}")
        return self.last


@dataclass
class PolicySetup:
    """What decides, on which observation, within which limits.

    Attributes:
        observation: the observation builder's config (None: nothing can decide).
        context: the operator's limits with the observation's pool facts (shield, fallback).
        policy: the primary policy (tracked), or None.
        shield: the shield with the fallback heuristic, or None.
        load_error: why the bundle could not be loaded (decisions say ``BundleLoadFailed``).
        warnings: mismatches between the config and the bundle worth knowing.
    """

    observation: ObservationConfig | None
    context: PolicyContext | None
    policy: TrackedPolicy | None
    shield: Shield | None
    load_error: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The primary policy's name (``none`` when nothing can decide)."""
        return self.policy.name if self.policy is not None else "none"


def _heuristic(config: ControllerConfig, where: str, name: str, knobs: dict[str, Any],
               context: PolicyContext) -> Policy:
    try:
        return make_baseline(name, context, **knobs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _config_context(config: ControllerConfig, observation: ObservationConfig) -> PolicyContext:
    """``observation``'s pool facts with the config's replica limits."""
    limited = with_replica_limits(observation, [p.max_replicas for p in config.pools])
    return PolicyContext(limited, tuple(p.min_replicas for p in config.pools), config.interval_s)


def heuristic_shield(config: ControllerConfig) -> ShieldConfig:
    """The shield's settings for a heuristic primary policy: the config's, without the SLO
    guard (it guards a learned policy; a heuristic runs as it is evaluated)."""
    return replace(config.shield, slo_guard=GUARD_OFF)


def build_policy_setup(config: ControllerConfig) -> PolicySetup:
    """The :class:`PolicySetup` for ``config`` (see the module docstring).

    Raises:
        ConfigError: a heuristic's knob value is invalid.
    """
    if config.policy.bundle is None:
        observation = config.observation_config()
        context = _config_context(config, observation)
        assert config.policy.heuristic is not None
        primary = _heuristic(config, "policy", config.policy.heuristic, config.policy.knobs,
                             context)
        fallback = _heuristic(config, "fallback", config.fallback.heuristic,
                              config.fallback.knobs, context)
        return PolicySetup(observation, context, TrackedPolicy(primary),
                           Shield(context, heuristic_shield(config), fallback=fallback))
    try:
        bundle_policy = BundlePolicy.load(config.policy.bundle, expect_pools=config.pool_names)
    except BundleError as err:
        log.error("cannot load the policy bundle: %s; running the fallback heuristic %s",
                  err, config.fallback.heuristic,
                  extra={"fields": {"event": "BundleLoadFailed", "error": str(err)}})
        if not config.has_profiles:
            return PolicySetup(None, None, None, None, load_error=str(err), warnings=(
                "the config has no profile facts, so no fallback can run: the current "
                "replicas and weights are kept",))
        observation = config.observation_config()
        context = _config_context(config, observation)
        primary = _heuristic(config, "fallback", config.fallback.heuristic,
                             config.fallback.knobs, context)
        fallback = _heuristic(config, "fallback", config.fallback.heuristic,
                              config.fallback.knobs, context)
        return PolicySetup(observation, context, TrackedPolicy(primary),
                           Shield(context, heuristic_shield(config), fallback=fallback),
                           load_error=str(err))
    bundle = bundle_policy.bundle
    observation = bundle.observation_config
    context = _config_context(config, observation)
    fallback = _heuristic(config, "fallback", config.fallback.heuristic, config.fallback.knobs,
                          context)
    shield = Shield(context, config.shield, fallback=fallback,
                    observation_range=bundle_policy.observation_range,
                    familiarity=FamiliarityGate(bundle_policy.unfamiliarity))
    return PolicySetup(observation, context, TrackedPolicy(bundle_policy), shield,
                       warnings=bundle_warnings(config, observation, bundle.interval_s))


def bundle_warnings(config: ControllerConfig, observation: ObservationConfig,
                    interval_s: float) -> tuple[str, ...]:
    """Where the config and the bundle's training setup differ."""
    notes = []
    if interval_s != config.interval_s:
        notes.append(f"interval_s is {config.interval_s:g} s but the bundle was trained to "
                     f"decide every {interval_s:g} s")
    for info, pool in zip(observation.pools, config.pools, strict=True):
        if pool.max_replicas > info.max_replicas:
            notes.append(f"pool {pool.name}: max_replicas {pool.max_replicas} is above the "
                         f"bundle's {info.max_replicas}; the shield allows it, the policy "
                         f"was not trained for it")
        if pool.profile is not None:
            for key in PROFILE_FIELDS:
                ours, theirs = getattr(pool.profile, key), getattr(info, key)
                if ours != theirs:
                    notes.append(f"pool {pool.name}: {key} is {ours} in the config but "
                                 f"{theirs} in the bundle (the bundle's is used)")
    if config.slo is not None and (config.slo.ttft_s, config.slo.itl_s) != (
            observation.slo_ttft_s, observation.slo_itl_s):
        notes.append(f"slo {config.slo.ttft_s:g}/{config.slo.itl_s:g} s differs from the "
                     f"bundle's {observation.slo_ttft_s:g}/{observation.slo_itl_s:g} s "
                     f"(the bundle's is used)")
    return tuple(notes)
