"""The safety shield: every decision passes through it before anything is scaled or routed.

Rules, in order (each intervention carries a reason, like HPA's ``ScalingLimited``):

1. ``FallbackNaN`` / ``FallbackOutOfRange`` / ``FallbackUnfamiliar``: the observation has NaN,
   lies outside the range seen in training (with a margin), or has been unlike the training
   observations for a while (:mod:`rlscale.agents.familiarity`) — the fallback decides instead.
   ``FallbackInvalid``: the policy returned an invalid decision — the fallback decides (or, with
   no fallback, the current replicas and weights are kept: ``KeepCurrent``).
2. ``TooManyReplicas`` / ``TooFewReplicas``: clamp to each pool's ``[min, max]``.
3. ``ScaleUpLimit`` / ``ScaleDownLimit``: at most ``max_scale_up`` / ``max_scale_down`` replicas
   per pool per decision.
4. ``ScaleDownWhilePending``: no scale-down of a pool while its new pods are still starting or
   pending (as the HPA waits for readiness before trusting the metric).
5. ``GpuInventory``: growth only within the GPUs of the pool's type (pools in order).
6. ``NoReadyReplicas``: weight only to pools with ready replicas; if that leaves nothing,
   weights proportional to ready capacity (``WeightsByCapacity``).

Before rules 2-6, the SLO guard (``ShieldConfig.slo_guard``; it needs a fallback;
:mod:`rlscale.agents.slo_guard`): while the last intervals missed the SLO, each pool gets at
least the fallback's replicas and the fallback's routing weights (``SloGuard``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rlscale.agents import reasons
from rlscale.agents.familiarity import FamiliarityGate
from rlscale.agents.policy import Decision, Policy, PolicyContext, PolicyInput
from rlscale.agents.slo_guard import SloGuard, SloGuardConfig


@dataclass(frozen=True)
class ShieldConfig:
    """Limits the shield enforces.

    Attributes:
        max_scale_up: most replicas added to one pool per decision.
        max_scale_down: most replicas removed from one pool per decision.
        block_scale_down_while_pending: rule 4 on or off.
        range_margin: how far (in observation units) outside the training range still counts
            as in range.
        slo_guard: when the fallback's replicas and weights take over while the SLO is missed
            (it needs a fallback; :data:`~rlscale.agents.slo_guard.GUARD_OFF` turns it off).
    """

    max_scale_up: int = 4
    max_scale_down: int = 2
    block_scale_down_while_pending: bool = True
    range_margin: float = 0.25
    slo_guard: SloGuardConfig = field(default_factory=SloGuardConfig)


@dataclass(frozen=True)
class ShieldResult:
    """The decision to act on and every rule that changed it."""

    decision: Decision
    interventions: tuple[str, ...] = field(default_factory=tuple)
    fallback_used: bool = False


class Shield:
    """Clamps decisions to hard limits and falls back to a heuristic when the input is unsafe."""

    def __init__(self, context: PolicyContext, config: ShieldConfig | None = None, *,
                 fallback: Policy | None = None,
                 observation_range: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None,
                 familiarity: FamiliarityGate | None = None) -> None:
        self.context = context
        self.config = config or ShieldConfig()
        self.fallback = fallback
        self.observation_range = observation_range
        self.familiarity = familiarity
        self.guard = (SloGuard(self.config.slo_guard)
                      if fallback is not None and self.config.slo_guard.enter is not None
                      else None)

    def reset(self) -> None:
        """Reset the fallback's state, the familiarity gate's history and the SLO guard."""
        if self.fallback is not None:
            self.fallback.reset()
        if self.familiarity is not None:
            self.familiarity.reset()
        if self.guard is not None:
            self.guard.reset()

    def input_problem(self, observed: PolicyInput) -> str | None:
        """Why the observation cannot be trusted (a reason), or None."""
        vector = observed.vector
        if not np.all(np.isfinite(vector)):
            return reasons.FALLBACK_NAN
        if self.observation_range is not None:
            low, high = self.observation_range
            margin = self.config.range_margin
            if np.any(vector < low - margin) or np.any(vector > high + margin):
                return reasons.FALLBACK_OUT_OF_RANGE
        if self.familiarity is not None and self.familiarity.update(vector):
            return reasons.FALLBACK_UNFAMILIAR
        return None

    def decide(self, policy: Policy, observed: PolicyInput) -> ShieldResult:
        """Ask ``policy`` (or the fallback, when the input is unsafe) and shield the answer."""
        guarding = self.guard is not None and self.guard.update(observed.pools)
        problem = self.input_problem(observed)
        if problem is not None:
            return self._fall_back(problem, observed)
        try:
            decision = policy.decide(observed)
        except Exception as err:  # a failing policy must not stop the loop
            decision = Decision(observed.desired, _current_weights(observed), False,
                                reasons.POLICY_ERROR, f"{type(err).__name__}: {err}")
        if (self.guard is None or self.fallback is None or not decision.valid
                or len(decision.replicas) != self.context.pool_count):
            return self.apply(decision, observed)  # (an unusable decision: the fallback's)
        backup = self.fallback.decide(observed)  # every decision: its state stays current
        if not guarding or not backup.valid or len(backup.replicas) != len(decision.replicas):
            return self.apply(decision, observed)
        lifted = tuple(max(mine, theirs)
                       for mine, theirs in zip(decision.replicas, backup.replicas, strict=True))
        attainment = self.guard.last_attainment
        seen = f"{attainment:.1%}" if attainment is not None else "no requests"
        guarded = Decision(lifted, backup.weights, True, reasons.SLO_GUARD,
                           f"{reasons.SLO_GUARD}: SLO attainment {seen} in the last interval, "
                           f"below {self.guard.config.enter:.1%}: at least "
                           f"{self.fallback.name}'s replicas {list(backup.replicas)} and its "
                           f"weights; the policy asked for {list(decision.replicas)}")
        return self._clamp(guarded, observed, (reasons.SLO_GUARD,))

    def apply(self, decision: Decision, observed: PolicyInput) -> ShieldResult:
        """Shield ``decision`` (rules 1-6)."""
        if not decision.valid:
            return self._fall_back(reasons.FALLBACK_INVALID, observed, decision.message)
        return self._clamp(decision, observed, ())

    def _fall_back(self, reason: str, observed: PolicyInput, detail: str = "") -> ShieldResult:
        if self.fallback is None:
            keep = Decision(observed.desired, _current_weights(observed), True,
                            reasons.KEEP_CURRENT,
                            f"{reason}: no fallback policy; keeping the current state {detail}")
            return ShieldResult(keep, (reason, reasons.KEEP_CURRENT), False)
        decision = self.fallback.decide(observed)
        if not decision.valid:
            keep = Decision(observed.desired, _current_weights(observed), True,
                            reasons.KEEP_CURRENT,
                            f"{reason}; fallback invalid too: {decision.message}")
            return ShieldResult(keep, (reason, reasons.KEEP_CURRENT), True)
        why = f"{reason}{f' ({detail})' if detail else ''}: fallback {self.fallback.name}"
        decision = Decision(decision.replicas, decision.weights, True, decision.reason,
                            f"{why}: {decision.message}")
        result = self._clamp(decision, observed, (reason,))
        return ShieldResult(result.decision, result.interventions, True)

    def _clamp(self, decision: Decision, observed: PolicyInput,
               already: tuple[str, ...]) -> ShieldResult:
        interventions = list(already)
        pools = self.context.observation.pools
        count = self.context.pool_count
        if len(decision.replicas) != count:
            return self._fall_back(reasons.FALLBACK_INVALID, observed,
                                   f"decision has {len(decision.replicas)} pools, not {count}")
        replicas = list(decision.replicas)
        current = observed.desired
        inventory = gpu_inventory(observed, self.context)
        used: dict[str, int] = {}
        for i, pool in enumerate(pools):
            low, high = self.context.min_replicas[i], pool.max_replicas
            if replicas[i] > high:
                replicas[i] = high
                interventions.append(reasons.pool_reason(reasons.TOO_MANY_REPLICAS, pool.name))
            elif replicas[i] < low:
                replicas[i] = low
                interventions.append(reasons.pool_reason(reasons.TOO_FEW_REPLICAS, pool.name))
            if replicas[i] > current[i] + self.config.max_scale_up:
                replicas[i] = current[i] + self.config.max_scale_up
                interventions.append(reasons.pool_reason(reasons.SCALE_UP_LIMIT, pool.name))
            if replicas[i] < current[i] - self.config.max_scale_down:
                replicas[i] = max(low, current[i] - self.config.max_scale_down)
                interventions.append(reasons.pool_reason(reasons.SCALE_DOWN_LIMIT, pool.name))
            status = observed.pools[i] if i < len(observed.pools) else None
            waiting = status.starting_replicas + status.pending_replicas if status else 0
            if (self.config.block_scale_down_while_pending and replicas[i] < current[i]
                    and waiting > 0):
                replicas[i] = current[i]
                interventions.append(
                    reasons.pool_reason(reasons.SCALE_DOWN_WHILE_PENDING, pool.name))
            if replicas[i] > current[i]:
                gpus_left = inventory.get(pool.gpu_type, 0) - used.get(pool.gpu_type, 0)
                allowed = max(current[i], gpus_left // pool.gpus_per_replica)
                if replicas[i] > allowed:
                    replicas[i] = allowed
                    interventions.append(reasons.pool_reason(reasons.GPU_INVENTORY, pool.name))
            used[pool.gpu_type] = used.get(pool.gpu_type, 0) + replicas[i] * pool.gpus_per_replica
        weights = list(decision.weights)
        ready = [p.ready_replicas for p in observed.pools]
        for i, pool in enumerate(pools):
            if weights[i] > 0 and ready[i] == 0:
                weights[i] = 0.0
                interventions.append(reasons.pool_reason(reasons.NO_READY_REPLICAS, pool.name))
        if not any(w > 0 for w in weights) and any(ready):
            weights = [r * p.capacity_rps for r, p in zip(ready, pools, strict=True)]
            interventions.append(reasons.WEIGHTS_BY_CAPACITY)
        if not any(w > 0 for w in weights):
            weights = list(_current_weights(observed))
        reason = decision.reason if not interventions else reasons.base_reason(interventions[0])
        message = decision.message if not interventions else (
            f"{decision.message} [shield: {', '.join(interventions)}]")
        shielded = Decision(tuple(replicas), tuple(weights), True, reason, message)
        return ShieldResult(shielded, tuple(interventions), False)


def _current_weights(observed: PolicyInput) -> tuple[float, ...]:
    weights = tuple(p.routing_weight for p in observed.snapshot.pools)
    return weights if any(w > 0 for w in weights) else tuple(1.0 for _ in weights)


def gpu_inventory(observed: PolicyInput, context: PolicyContext) -> dict[str, int]:
    """GPUs of each type the cluster has now: free ones plus those held by pods (starting,
    ready, draining) of the pools; after a node loss this is below the configured inventory."""
    held: dict[str, int] = {}
    for status, pool in zip(observed.snapshot.pools, context.observation.pools, strict=True):
        holding = status.ready_replicas + status.starting_replicas + status.draining_replicas
        held[pool.gpu_type] = held.get(pool.gpu_type, 0) + holding * pool.gpus_per_replica
    return {gpu: held.get(gpu, 0) + free for gpu, free in observed.snapshot.free_gpus.items()}


class ShieldedPolicy:
    """A policy whose every decision goes through a shield (with its fallback)."""

    def __init__(self, policy: Policy, shield: Shield) -> None:
        self.policy = policy
        self.shield = shield
        self.name = policy.name
        self.last: ShieldResult | None = None

    def reset(self) -> None:
        """Reset the policy and the fallback."""
        self.policy.reset()
        self.shield.reset()

    def decide(self, observed: PolicyInput) -> Decision:
        """The shielded decision; :attr:`last` keeps the interventions."""
        self.last = self.shield.decide(self.policy, observed)
        return self.last.decision
