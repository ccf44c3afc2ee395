"""Policy specifications for evaluation: ``name`` or ``name:knob=value,knob=value``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlscale.agents.baselines import BASELINES, keyword_knobs, knobs_of, make_baseline
from rlscale.agents.bundle.format import BundleError
from rlscale.agents.bundle.io import load_bundle
from rlscale.agents.familiarity import FamiliarityConfig, FamiliarityGate
from rlscale.agents.numpy_policy import BundlePolicy
from rlscale.agents.policy import Policy, PolicyContext
from rlscale.agents.shield import Shield, ShieldConfig, ShieldedPolicy
from rlscale.agents.slo_guard import SloGuardConfig
from rlscale.configschema import ConfigError
from rlscale.evaluate.floor import FloorPolicy
from rlscale.evaluate.oracle import OraclePolicy
from rlscale.metrics.observation_config import ObservationConfig
from rlscale.sim.scenario import Scenario
from rlscale.sim.workload import Workload

_Setting = TypeVar("_Setting")

DEFAULT_POLICIES = ("static", "hpa", "kpa", "keda", "planner", "lookahead")
"""What ``rlscale evaluate`` runs when ``--policies`` is not given."""

LOOKAHEAD_NAMES = ("lookahead", "oracle")
"""The look-ahead heuristic (it reads the future arrivals but is a tuned heuristic, not a
bound; ``oracle`` is its former name, still accepted). The bound is ``floor``."""

POLICY_NAMES = ("ppo", *BASELINES, *LOOKAHEAD_NAMES, "floor")
"""Every policy name evaluation accepts: the shipped (or a given) PPO bundle, the heuristic
baselines, the look-ahead heuristic and the clairvoyant cost floor. Help texts and error
messages list these."""


@dataclass(frozen=True)
class PolicySpec:
    """A policy by name with its knob settings (picklable, so workers can build it)."""

    name: str
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Name as shown in tables (knobs included when set)."""
        if not self.knobs:
            return self.name
        return self.name + "(" + ",".join(f"{k}={v}" for k, v in sorted(self.knobs.items())) + ")"


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_policies(text: str) -> list[PolicySpec]:
    """``static,hpa:target=0.6,planner`` -> specs; knobs after ``:``, separated by ``;``."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, knob_text = item.partition(":")
        knobs: dict[str, Any] = {}
        for pair in filter(None, knob_text.split(";")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"--policies: expected KNOB=VALUE in {item!r}, got {pair!r}")
            knobs[key.strip()] = _value(value.strip())
        name = name.strip()
        if name not in POLICY_NAMES:
            raise ConfigError(f"--policies: unknown policy {name!r}; valid: "
                              f"{', '.join(POLICY_NAMES)}")
        specs.append(PolicySpec(name, knobs))
    if not specs:
        raise ConfigError("--policies: no policy given")
    return specs


def build_policy(spec: PolicySpec, context: PolicyContext,
                 scenario: Scenario | None = None) -> Policy:
    """Instantiate a policy for an environment's context.

    ``ppo`` (knob ``bundle``: a policy bundle directory; ``fallback``: a baseline, default
    ``planner``; ``unfamiliar``: the familiarity gate's threshold, a smoothed mean |z|, or
    ``off``; ``guard``: the SLO guard's threshold, an interval's SLO attainment, or ``off``;
    by default :class:`~rlscale.agents.slo_guard.SloGuardConfig`'s, as in the controller)
    runs the bundle's numpy policy behind the shield, which falls back to the
    baseline when the observation is NaN, outside the range seen in training, or unfamiliar,
    and lifts the decision to the baseline's while the SLO is missed (the guard).
    ``floor`` (knob ``capacity_fraction``) runs the clairvoyant cost floor's schedule and
    needs the ``scenario`` (profiles, inventory).
    """
    if spec.name not in POLICY_NAMES:
        raise ConfigError(f"unknown policy {spec.name!r}; valid: {', '.join(POLICY_NAMES)}")
    if spec.name == "ppo":
        return _bundle_policy(spec, context)
    if spec.name in LOOKAHEAD_NAMES:
        try:
            return OraclePolicy(context, **spec.knobs)
        except TypeError as err:
            raise ConfigError(f"{spec.name}: {err}") from None
    if spec.name == "floor":
        if scenario is None:
            raise ConfigError("floor: needs the scenario (profiles and GPU inventory)")
        try:
            return FloorPolicy(context, scenario, **spec.knobs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"floor: {err}") from None

    try:
        return make_baseline(spec.name, context, **spec.knobs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def heuristic_knobs(name: str) -> tuple[str, ...]:
    """The knobs of heuristic policy ``name``: a baseline, the look-ahead heuristic or the
    clairvoyant floor (the policies an imitation expert may be).

    Raises:
        ValueError: ``name`` is none of these (the message lists the valid ones).
    """
    if name == "floor":
        return keyword_knobs(FloorPolicy)
    if name in LOOKAHEAD_NAMES:
        return keyword_knobs(OraclePolicy)
    try:
        return knobs_of(name)
    except ValueError:
        raise ValueError(f"unknown heuristic {name!r}; valid: "
                         f"{sorted([*BASELINES, *LOOKAHEAD_NAMES, 'floor'])}") from None


def episode_policy(spec: PolicySpec, context: PolicyContext, scenario: Scenario,
                   workload: Workload | None, clock_start_s: float) -> Policy:
    """:func:`build_policy` for one episode, reset; a clairvoyant policy (``floor``,
    ``lookahead``) is also given the episode's ``workload``, whose time 0 falls at simulated
    clock time ``clock_start_s`` (s), and the pools' median cold starts."""
    policy = build_policy(spec, context, scenario)
    policy.reset()
    prepare: Callable[..., None] | None = getattr(policy, "prepare", None)
    if prepare is not None and workload is not None:
        leads = [pool.replica_cold_start.median_s for pool in scenario.cluster.pools]
        prepare(workload, clock_start_s, lead_s=leads)
    return policy


def policy_observation(spec: PolicySpec, pools: list[str]) -> ObservationConfig | None:
    """The observation config ``spec`` must be judged with: a bundle's own (its capacities
    and windows, exactly as the controller builds its observation), or None for heuristics
    (which read the evaluated scenario's)."""
    if spec.name != "ppo":
        return None
    try:
        return load_bundle(_bundle_path(spec, pools), expect_pools=pools).observation_config
    except BundleError as err:
        raise ConfigError(f"ppo: {err}") from None


def _bundle_path(spec: PolicySpec, pools: list[str]) -> str:
    unknown = sorted(set(spec.knobs) - {"bundle", "fallback", "unfamiliar", "guard"})
    bundle = spec.knobs.get("bundle") or packaged_bundle(pools)
    if unknown or bundle is None:
        raise ConfigError(f"ppo: needs knob 'bundle' (a bundle directory; no packaged policy "
                          f"serves pools {pools}), optional 'fallback', 'unfamiliar' and "
                          f"'guard'; got {sorted(spec.knobs)}")
    return str(bundle)


def _bundle_policy(spec: PolicySpec, context: PolicyContext) -> Policy:
    pools = [p.name for p in context.observation.pools]
    try:
        policy = BundlePolicy.load(_bundle_path(spec, pools), expect_pools=pools)
    except BundleError as err:
        raise ConfigError(f"ppo: {err}") from None
    fallback = build_policy(PolicySpec(str(spec.knobs.get("fallback", "planner"))), context)
    gate = _threshold_knob(spec, "unfamiliar", FamiliarityConfig().enter,
                           lambda enter: FamiliarityConfig(enter=enter), "a mean |z| > 0.9")
    guard = _threshold_knob(spec, "guard", SloGuardConfig().enter,
                            lambda enter: SloGuardConfig(enter=enter),
                            "an SLO attainment in (0, 1]")
    shield = Shield(context, ShieldConfig(slo_guard=guard), fallback=fallback,
                    observation_range=policy.observation_range,
                    familiarity=FamiliarityGate(policy.unfamiliarity, gate))
    return ShieldedPolicy(policy, shield)


def _threshold_knob(spec: PolicySpec, knob: str, default: float | None,
                    make: Callable[[float | None], _Setting], meaning: str) -> _Setting:
    """The setting ``make`` builds from knob ``knob`` of ``spec`` (a number, or ``off`` for
    None; ``default`` when absent); ConfigError naming the knob when it is neither, or when
    ``make`` refuses it."""
    value = spec.knobs.get(knob, default)
    try:
        return make(float(value) if value not in (None, "off") else None)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"ppo: {knob}={value!r}: {err} ({meaning}, or off)") from None


def packaged_bundle(pools: list[str]) -> str | None:
    """The pretrained bundle shipped in ``rlscale/policies/`` for these pools, if any."""
    import json
    from importlib import resources

    folder = resources.files("rlscale").joinpath("policies")
    if not folder.is_dir():
        return None
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        metadata = entry.joinpath("bundle.json")
        if metadata.is_file():
            try:
                if json.loads(metadata.read_text())["action"]["pools"] == pools:
                    return str(entry)
            except (ValueError, KeyError, TypeError):
                continue
    return None


def tunable(spec: PolicySpec) -> tuple[str, tuple[float, ...]] | None:
    """The policy's main knob and its candidate values, if it has one."""
    if spec.name in LOOKAHEAD_NAMES:
        return OraclePolicy.TUNABLE, OraclePolicy.TUNE_GRID
    factory = BASELINES.get(spec.name)
    knob = getattr(factory, "TUNABLE", None)
    grid = getattr(factory, "TUNE_GRID", None)
    if knob is None or grid is None:
        return None
    return str(knob), tuple(grid)
