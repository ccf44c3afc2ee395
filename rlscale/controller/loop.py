"""The control loop: collect, observe, decide behind the shield, and (maybe) act.

One iteration (:meth:`ControlLoop.run_once`):

1. **collect** every pool's state and pod metrics from the :class:`MetricSource`;
2. **judge the data**. Metrics are *stale* when a source says so or when the newest usable
   collection is older than ``staleness_s``; *missing* when a pool's Deployment or all of its
   pods' metrics could not be read; *partial* when some pods' metrics could not. Stale or
   missing: the current replicas and weights are kept and nothing is written (reason
   ``StaleMetrics`` / ``MissingMetrics``): the loop never acts on data it does not have; a
   pod sample beyond physical bounds (:mod:`~rlscale.controller.plausibility`) is left out
   as if its scrape had failed (``ImplausibleMetrics``, partial);
3. **observe** with the same :class:`~rlscale.metrics.observation.ObservationBuilder` the
   environment uses, on the snapshot history, plus
   :func:`~rlscale.metrics.intervals.interval_stats` for the heuristics;
4. **decide** through the :class:`~rlscale.agents.shield.Shield`: partial metrics go to the
   fallback heuristic with no scale-down (missing pods would look idle; reason
   ``PartialMetrics``); otherwise the primary policy, which the shield replaces by the
   fallback when the observation is NaN or outside the training range
   (``FallbackNaN`` / ``FallbackOutOfRange``) or the policy raised or refused
   (``PolicyError`` / ``FallbackInvalid``); a bundle that failed to load is reported as
   ``BundleLoadFailed`` on every decision;
5. **act** only in ``act`` mode and while this process can prove it holds the Lease, asked
   when the iteration starts *and again immediately before every write* (fencing: a process
   paused mid-iteration and resumed after another took over writes nothing; see
   :meth:`~rlscale.controller.leader.LeaderElector.holds_lease`): scale the pools whose
   replicas changed, set the HTTPRoute weights if the shares changed, record Events;
   ``shadow`` mode logs what it would do and never writes;
6. **report**: metrics, one JSON log line per decision, the :class:`DecisionRecord`.

Snapshot history. A pod listed as running whose scrape failed is absent from that snapshot;
when it is read again its counters would look like one interval's growth, so the previous
snapshot is given its current sample (zero growth) and that interval counts as partial. A pod
that was still starting (not ready: vLLM serves no ``/metrics`` while it loads the model, and
the Service sends it nothing) is not backfilled: its counters start at zero.

Time. The loop's schedule, readiness, staleness and every rate's denominator are read from
``clock``, a :class:`~rlscale.controller.clocks.SteadyClock` by default (monotonic, expressed
as Unix seconds as of start): a wall-clock step changes no decision.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rlscale.agents import reasons
from rlscale.agents.policy import Decision, PolicyInput
from rlscale.agents.shield import ShieldResult
from rlscale.agents.window import ObservationWindow
from rlscale.controller.actuator import (
    ActuationError,
    Actuator,
    FencedError,
    PermanentActuationError,
    backend_weights,
)
from rlscale.controller.clocks import SteadyClock
from rlscale.controller.cluster_state import GATEWAY_GROUP, GATEWAY_VERSION
from rlscale.controller.config import ControllerConfig
from rlscale.controller.observability import ControllerMetrics, EventRecorder
from rlscale.controller.outside_writes import ROUTE, OutsideWriteGuard
from rlscale.controller.plausibility import screen
from rlscale.controller.policies import PolicySetup
from rlscale.controller.problems import Problem
from rlscale.controller.resources import RouteConfig
from rlscale.controller.sources import CollectedMetrics, MetricSource
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import PoolInfo
from rlscale.weights import traffic_shares

log = logging.getLogger("rlscale.controller")



@dataclass(frozen=True)
class DecisionRecord:
    """One iteration's outcome.

    Attributes:
        time_s: Unix seconds; mode: ``act`` or ``shadow``; leader: held the Lease.
        reason: the headline reason (``StaleMetrics``, ``PartialMetrics``, ``ScaleUp``, ...).
        policy: who decided (the bundle's or heuristic's name, the fallback's, or ``none``).
        fallback_reason: why the primary policy did not decide (None if it did).
        current / replicas: replicas per pool before and as decided.
        weights: routing share per pool decided (0-1; the current ones when kept).
        route_weights: integer weight per backendRef to write (empty without a route).
        interventions: shield rules (``Rule:pool``) that changed the decision.
        message: the numbers behind it; problems: what could not be observed.
        staleness_s: age of the metrics decided on (s; inf when there never were any).
        actions: writes done (``scale``, ``weights``); in shadow mode or as follower, what
            would have been written, prefixed ``would``.
        errors: failed writes.
        kept: the current state was kept because the data or a policy was missing (reasons
            ``StaleMetrics``, ``MissingMetrics``, ``BadMetrics``, ``BundleLoadFailed``,
            ``PolicyError`` when even the fallback failed).
    """

    time_s: float
    mode: str
    leader: bool
    reason: str
    policy: str
    fallback_reason: str | None
    current: dict[str, int]
    replicas: dict[str, int]
    weights: dict[str, float]
    route_weights: dict[str, int] = field(default_factory=dict)
    interventions: tuple[str, ...] = ()
    message: str = ""
    problems: tuple[str, ...] = ()
    staleness_s: float = math.inf
    actions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (infinite staleness as None)."""
        out = asdict(self)
        out["staleness_s"] = None if math.isinf(self.staleness_s) else round(
            self.staleness_s, 3)
        return out


class ControlLoop:
    """Runs the controller's iterations (see the module docstring).

    Args:
        config: the controller config; source: where metrics come from;
        setup: the policy, shield and observation config;
        actuator: writes (None: never writes, as in shadow mode);
        metrics / events: where to report (optional);
        is_leader: whether this process may write *now* (leader election's fence), asked at
            the start of an iteration and immediately before every write;
        clock: the steady timeline (seconds; see the module docstring) of
            :meth:`run_forever`, readiness, snapshots and rates.
    """

    def __init__(self, config: ControllerConfig, source: MetricSource, setup: PolicySetup, *,
                 actuator: Actuator | None = None, metrics: ControllerMetrics | None = None,
                 events: EventRecorder | None = None,
                 is_leader: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.source = source
        self.setup = setup
        self.actuator = actuator
        self.metrics = metrics or ControllerMetrics()
        self.events = events
        self.is_leader = is_leader
        self.clock = clock or SteadyClock()
        self.builder = (ObservationBuilder(setup.observation) if setup.observation is not None
                        else None)
        self.lookback = (ObservationWindow(self.builder, config.interval_s)
                         if self.builder is not None else None)
        """The snapshots the observation looks back on (the environment keeps the same)."""
        self.last_good_s: float | None = None
        """When the newest usable metrics were taken (``clock`` seconds)."""
        self.last_success_s: float | None = None
        """When an iteration last decided on usable metrics (for readiness)."""
        self._unsampled: set[str] = set()
        outside = config.outside_writes
        self.guard = OutsideWriteGuard(outside.rule, outside.back_off_s)
        """This controller's writes, outside ones, and the targets held."""

    # ------------------------------------------------------------------ entry points
    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Iterate every ``interval_s`` until ``stop`` is set (the only method that waits)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            started = self.clock()
            try:
                self.run_once(started)
            except Exception:  # an iteration must never end the controller
                log.exception("control iteration failed")
            stop.wait(max(0.0, self.config.interval_s - (self.clock() - started)))

    def ready(self) -> tuple[bool, str]:
        """Readiness: a decision on usable metrics within the last 3 intervals (>= 60 s)."""
        if self.last_success_s is None:
            return False, "no control iteration has decided on usable metrics yet"
        age = self.clock() - self.last_success_s
        limit = max(3.0 * self.config.interval_s, 60.0)
        if age > limit:
            return False, f"last successful iteration {age:.0f} s ago (limit {limit:.0f} s)"
        return True, "ok"

    def run_once(self, now_s: float) -> DecisionRecord:
        """One iteration at ``now_s`` (``clock`` seconds); returns what was decided and
        done."""
        started = time.perf_counter()
        leader = bool(self.is_leader())
        try:
            record = self._iterate(now_s, leader)
        finally:
            self.metrics.loop_duration.observe(time.perf_counter() - started)
        self._report(record)
        return record

    # ------------------------------------------------------------------ one iteration
    def _iterate(self, now_s: float, leader: bool) -> DecisionRecord:
        names = self.config.pool_names
        try:
            collected = self.source.collect(self.config.pools, now_s)
        except Exception as err:  # a source should not raise; if it does, nothing is known
            log.exception("metric source failed")
            collected = CollectedMetrics(now_s, {}, (), None, None, (Problem(
                reasons.SOURCE_FAILED, "missing", f"{type(err).__name__}: {err}"),))
        current = {n: collected.pools[n].desired for n in names if n in collected.pools}
        collected = self._outside_writes(collected, current, now_s, leader)
        problems = list(collected.problems)
        unread = [n for n in names if n not in collected.pools]
        stale = collected.with_severity("stale")
        missing = collected.with_severity("missing")
        if not unread and not stale and not missing:
            self.last_good_s = now_s - collected.sample_age_s
        staleness = math.inf if self.last_good_s is None else now_s - self.last_good_s

        def keep(reason: str, message: str) -> DecisionRecord:
            weights = dict.fromkeys(current, 1.0) if collected.weights is None else {
                n: collected.weights.get(n, 0.0) for n in current}
            return DecisionRecord(
                time_s=now_s, mode=self.config.mode, leader=leader, reason=reason,
                policy="none", fallback_reason=reason, current=current,
                replicas=dict(current), weights=_shares(weights), message=message,
                problems=tuple(map(str, problems)), staleness_s=staleness, kept=True)

        if stale or (self.last_good_s is not None and staleness > self.config.staleness_s):
            why = (str(stale[0]) if stale else
                   f"newest usable metrics are {staleness:.0f} s old (more than "
                   f"{self.config.staleness_s:g} s)")
            return keep(reasons.STALE_METRICS, f"keeping the current state: {why}")
        if unread or missing:
            first = missing[0] if missing else f"no state for pool(s) {unread}"
            return keep(reasons.MISSING_METRICS, f"keeping the current state: {first}")
        lookback = self.lookback
        if lookback is None or self.setup.shield is None or self.setup.policy is None:
            return keep(reasons.BUNDLE_LOAD_FAILED, f"keeping the current state: no policy can "
                        f"decide: {self.setup.load_error}")

        collected = self._screen(collected, lookback, now_s)
        problems = list(collected.problems)
        backfilled = self._snapshot(collected, lookback)
        if backfilled:
            problems.append(Problem("BackfilledPods", "partial",
                                    f"pod(s) {backfilled} were read again after a failed "
                                    f"scrape: their growth over the gap is unknown"))
        try:
            observed = lookback.policy_input([current[n] for n in names], time_s=now_s)
        except ValueError as err:  # e.g. pods exporting different histogram buckets
            lookback.drop_latest()
            return keep(reasons.BAD_METRICS, f"keeping the current state: {err}")
        partial = [p for p in problems if p.severity == "partial"]
        try:
            result, fallback_reason, policy_name = self._decide(observed, bool(partial))
        except Exception as err:  # the fallback itself failed: nothing trustworthy decided
            log.exception("the fallback policy failed")
            return keep(reasons.POLICY_ERROR, f"keeping the current state: the fallback failed: "
                        f"{type(err).__name__}: {err}")
        self.last_success_s = now_s
        decision = result.decision
        replicas = dict(zip(names, decision.replicas, strict=True))
        shares = _shares(dict(zip(names, decision.weights, strict=True)))
        route_weights = (backend_weights(self.config.httproute, shares)
                         if self.config.httproute is not None else {})
        record = DecisionRecord(
            time_s=now_s, mode=self.config.mode, leader=leader,
            reason=fallback_reason or decision.reason, policy=policy_name,
            fallback_reason=fallback_reason, current=current, replicas=replicas,
            weights=shares, route_weights=route_weights, interventions=result.interventions,
            message=decision.message, problems=tuple(map(str, problems)),
            staleness_s=staleness)
        return self._act(record, collected)

    def _decide(self, observed: PolicyInput, partial: bool
                ) -> tuple[ShieldResult, str | None, str]:
        """The shielded decision, why the primary policy did not make it, and who did."""
        shield, policy = self.setup.shield, self.setup.policy
        assert shield is not None
        assert policy is not None
        fallback = shield.fallback
        if partial and fallback is not None:
            result = shield.apply(fallback.decide(observed), observed)
            result = _no_scale_down(result, observed,
                                    [p.max_replicas for p in shield.context.observation.pools],
                                    self.config.pool_names)
            return result, reasons.PARTIAL_METRICS, fallback.name
        policy.forget()
        result = shield.decide(policy, observed)
        reason: str | None = None
        if self.setup.load_error is not None:
            reason = reasons.BUNDLE_LOAD_FAILED
        elif result.fallback_used or reasons.KEEP_CURRENT in result.interventions:
            reason = (result.interventions[0] if result.interventions
                      else reasons.FALLBACK_INVALID)
            last = policy.last
            if (reason == reasons.FALLBACK_INVALID and last is not None
                    and last.reason == reasons.POLICY_ERROR):
                reason = reasons.POLICY_ERROR
        name = fallback.name if result.fallback_used and fallback is not None else policy.name
        return result, reason, name

    def _outside_writes(self, collected: CollectedMetrics, current: Mapping[str, int],
                        now_s: float, leader: bool) -> CollectedMetrics:
        """Find writes by others to what this controller wrote; report each (log, metric,
        Event, a ``degraded`` problem); the guard then holds the target per the rule. A
        process that does not hold the Lease forgets its writes: the next leader's are not
        outside ones."""
        if not (leader and self.is_leader()) or self.config.mode != "act":  # fenced, as writes
            self.guard.forget()
            return collected
        found: dict[str, Any] = dict(current)
        if self.config.httproute is not None and collected.weights is not None:
            found[ROUTE] = dict(collected.weights)
        writers = {n: collected.pools[n].replicas_manager for n in current}
        changes = self.guard.check(now_s, found, writers)
        if not changes:
            return collected
        pools = {p.name: p for p in self.config.pools}
        route = self.config.httproute
        problems = []
        for change in changes:
            rule = self.guard.rule
            message = (f"outside write: {change}; rule {rule}"
                       + (f" (left alone for {self.guard.back_off_s:g} s)"
                          if rule == "back_off" else ""))
            log.warning("%s", message, extra={"fields": {"event": "OutsideWrite"}})
            is_route = change.target == ROUTE
            self.metrics.outside_writes.labels(target="weights" if is_route else "replicas").inc()
            problems.append(Problem("OutsideWrite", "degraded", message,
                                    pool=None if is_route else change.target))
            if self.events is not None:
                if is_route and route is not None:
                    self.events.record(namespace=route.namespace, kind="HTTPRoute",
                                       name=route.name, reason="OutsideWrite", message=message,
                                       api_version=f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
                                       event_type="Warning")
                elif change.target in pools:
                    pool = pools[change.target]
                    self.events.record(namespace=pool.namespace, kind="Deployment",
                                       name=pool.deployment, reason="OutsideWrite",
                                       message=message, event_type="Warning")
        return replace(collected, problems=collected.problems + tuple(problems))

    def _screen(self, collected: CollectedMetrics, lookback: ObservationWindow, now_s: float
                ) -> CollectedMetrics:
        """Leave out samples beyond physical bounds (:mod:`rlscale.controller.plausibility`),
        rates judged against the last snapshot (pods about to be backfilled: gauges only)."""
        history = lookback.history
        prev = history[-1] if history else None
        previous = {} if prev is None else {
            p.pod: p for p in prev.pods if p.pod not in self._unsampled}
        dt_s = 0.0 if prev is None else now_s - prev.time_s
        kept, problems = screen(collected.samples, lookback.builder.config.pools, previous, dt_s,
                                bounds=self.config.plausibility)
        if not problems:
            return collected
        return replace(collected, samples=tuple(kept),
                       problems=collected.problems + tuple(problems))

    def _snapshot(self, collected: CollectedMetrics, lookback: ObservationWindow) -> list[str]:
        """Append this collection's snapshot to the window (backfilling re-read pods); the
        pods backfilled."""
        sampled = {s.pod for s in collected.samples}
        backfilled: list[str] = []
        history = lookback.history
        if history:
            prev = history[-1]
            known = {p.pod for p in prev.pods}
            again = [s for s in collected.samples if s.pod in self._unsampled
                     and s.pod not in known]
            if again:
                history[-1] = replace(prev, pods=prev.pods + tuple(again))
                backfilled = sorted(s.pod for s in again)
        # A starting pod (not ready, not terminating) serves no /metrics yet and has had no
        # traffic: read for the first time once ready, it starts from zero like a new pod.
        self._unsampled = {pod.name for state in collected.pools.values()
                           for pod in state.scrape_targets if pod.name not in sampled
                           and (pod.ready or pod.terminating)}
        infos = lookback.builder.config.pools
        lookback.append(collected.snapshot(infos, _free_gpus(collected, infos)))
        return backfilled

    # ------------------------------------------------------------------ acting
    def _act(self, record: DecisionRecord, collected: CollectedMetrics) -> DecisionRecord:
        route = self.config.httproute
        writes: list[_Write] = []
        for pool in self.config.pools:
            before, after = record.current[pool.name], record.replicas[pool.name]
            if before != after:
                writes.append(_Write(
                    f"scale {pool.namespace}/{pool.deployment} {before}->{after}",
                    namespace=pool.namespace, name=pool.deployment, target=pool.name,
                    replicas=after, event="ScaledUp" if after > before else "ScaledDown"))
        if route is not None and collected.weights is not None:
            now = backend_weights(route, {n: collected.weights.get(n, 0.0)
                                          for n in self.config.pool_names})
            if now != record.route_weights and any(record.route_weights.values()):
                writes.append(_Write(
                    f"weights {route.namespace}/{route.name} {now}->{record.route_weights}",
                    namespace=route.namespace, name=route.name, target=ROUTE,
                    event="WeightsChanged"))
        if not writes:
            return record
        if self.config.mode == "shadow" or self.actuator is None:
            return replace(record, actions=tuple(f"would {w.what} (shadow mode)"
                                                 for w in writes))
        if not record.leader:
            return replace(record, actions=tuple(f"would {w.what} (not the leader)"
                                                 for w in writes))
        actions, errors = [], []
        for write in writes:
            if not self.is_leader():  # fencing: the Lease may have been lost mid-iteration
                self.metrics.actuation_errors.labels(kind="fenced").inc()
                errors.append(f"fenced: {write.what}: not sent: this process cannot prove it "
                              f"holds the Lease now")
                break
            held = self.guard.held(write.target, record.time_s)
            if held is not None:
                actions.append(f"held {write.what}: {held}")
                continue
            try:
                if write.replicas is not None:
                    self.actuator.scale(write.namespace, write.name, write.replicas)
                    self.guard.wrote(write.target, write.replicas)
                else:
                    assert route is not None
                    self.actuator.set_weights(route, record.route_weights)
                    self.guard.wrote(ROUTE, _pool_weights(route, record.route_weights))
            except ActuationError as err:
                kind = ("fenced" if isinstance(err, FencedError) else "permanent"
                        if isinstance(err, PermanentActuationError) else "temporary")
                self.metrics.actuation_errors.labels(kind=kind).inc()
                errors.append(f"{kind}: {err}")
                if kind == "fenced":
                    break
                continue
            actions.append(write.what)
            if self.events is not None:
                scaled = write.replicas is not None
                self.events.record(
                    namespace=write.namespace, kind="Deployment" if scaled else "HTTPRoute",
                    name=write.name, reason=write.event,
                    message=f"{write.what}: {record.reason}: {record.message}",
                    api_version="apps/v1" if scaled else f"{GATEWAY_GROUP}/{GATEWAY_VERSION}")
        return replace(record, actions=tuple(actions), errors=tuple(errors))

    # ------------------------------------------------------------------ reporting
    def _report(self, record: DecisionRecord) -> None:
        m = self.metrics
        m.is_leader.set(1.0 if self.is_leader() else 0.0)
        m.staleness.set(record.staleness_s if math.isfinite(record.staleness_s) else -1.0)
        if record.fallback_reason is not None:
            m.fallbacks.labels(reason=record.fallback_reason).inc()
        for rule in record.interventions:
            m.interventions.labels(rule=reasons.base_reason(rule)).inc()
        for pool, replicas in record.replicas.items():
            own = [reasons.base_reason(r) for r in record.interventions
                   if r.endswith(f":{pool}")]
            m.decisions.labels(pool=pool, reason=own[0] if own else record.reason).inc()
            m.desired_replicas.labels(pool=pool).set(replicas)
            m.routing_weight.labels(pool=pool).set(record.weights.get(pool, 0.0))
        level = logging.WARNING if record.errors or record.kept else logging.INFO
        fields = {k: v for k, v in record.to_dict().items() if k != "message"}
        log.log(level, "decision %s: %s", record.reason, record.message,
                extra={"fields": {"event": "decision", **fields}})


# ---------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Write:
    """One planned write: a scale (``replicas`` set) or the route's weights."""

    what: str
    namespace: str
    name: str
    target: str
    event: str
    replicas: int | None = None


def _pool_weights(route: RouteConfig, backends: Mapping[str, int]) -> dict[str, float]:
    """Each pool's weight as :class:`ClusterReader` reads it back: its backendRefs' sum."""
    out: dict[str, float] = {}
    for service, weight in backends.items():
        pool = route.backends[service]
        out[pool] = out.get(pool, 0.0) + float(weight)
    return out


def _shares(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights as shares summing to 1 (all zero: equal shares)."""
    return dict(zip(weights, traffic_shares(list(weights.values()), if_none="equal"),
                    strict=True))


def _free_gpus(collected: CollectedMetrics, infos: Sequence[PoolInfo]) -> dict[str, int]:
    """Free GPUs per type from the nodes, or when they cannot be listed, estimated as the
    configured inventory less what the pools' pods hold."""
    if collected.free_gpus is not None:
        return collected.free_gpus
    inventory: dict[str, int] = {}
    held: dict[str, int] = {}
    for info in infos:
        inventory[info.gpu_type] = max(inventory.get(info.gpu_type, 0), info.gpu_inventory)
        state = collected.pools[info.name]
        holding = (state.ready + state.starting + state.draining) * info.gpus_per_replica
        held[info.gpu_type] = held.get(info.gpu_type, 0) + holding
    return {gpu: max(0, total - held.get(gpu, 0)) for gpu, total in inventory.items()}


def _no_scale_down(result: ShieldResult, observed: PolicyInput, maxima: Sequence[int],
                   names: Sequence[str]) -> ShieldResult:
    """No pool below its current replicas (unless above its max): with pods unobserved, the
    load is undercounted."""
    replicas = list(result.decision.replicas)
    added = []
    for i, (want, now, high) in enumerate(zip(replicas, observed.desired, maxima, strict=True)):
        floor = min(now, high)
        if want < floor:
            replicas[i] = floor
            added.append(f"NoScaleDownOnPartialMetrics:{names[i]}")
    if not added:
        return result
    d = result.decision
    decision = Decision(tuple(replicas), d.weights, True, d.reason,
                        f"{d.message} [partial metrics: no scale-down]")
    return ShieldResult(decision, (*result.interventions, *added), result.fallback_used)

