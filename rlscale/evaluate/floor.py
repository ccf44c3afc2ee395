"""The clairvoyant cost floor: the cheapest replica schedule that serves the known future load.

Given the requests that will arrive in each control interval, each pool's per-replica capacity
at the SLO, price, cold-start lead, replica limits and its GPU type's inventory, the floor is the
schedule of billed replicas ``b[i, t]`` (integers) that minimizes

    Σ_i,t  price_i · b[i, t] · interval / 3600          (US dollars)

subject to, for every interval ``t``:

* demand: ``Σ_i capacity_i · y[i, t] ≥ demand_t`` where ``y[i, t]`` (integer) counts the
  replicas of pool ``i`` in service, and routing shares are free (any split across pools);
* cold start: ``y[i, t] ≤ b[i, τ]`` for every ``τ`` in ``[t − lead_i, t]`` — a replica serves
  only after it has been billed for its lead time — and ``y[i, t] ≤ ready_i`` (the replicas
  ready at the start) while ``t < lead_i``;
* limits: ``min_i ≤ b[i, t] ≤ max_i`` and ``Σ_{i of type G} gpus_i · b[i, t] ≤ inventory_G``.

Intervals whose demand exceeds what the cluster can serve get a slack (penalized far above any
GPU price), so the program is always feasible; :attr:`FloorSchedule.short_rps` reports it.
It is solved as a mixed-integer program by HiGHS (``scipy.optimize.milp``) to a 0.1 % gap or
``NODE_LIMIT`` branch-and-bound nodes, whichever comes first; the proven lower bound is kept
with the schedule (on hetero-3pool's test windows the schedule lies within ~2-3 % of it).

Capacity per replica (requests/s) comes from the pool's performance profile at the SLO for the
window's own mean prompt and output lengths (:func:`~rlscale.sim.capacity.replica_capacity_rps`
with ``capacity_fraction`` of the SLO-bound throughput); a pool whose prefill of the window's
90th-percentile prompt alone exceeds the TTFT SLO gets capacity 0. The schedule assumes the
median cold start and steady per-interval load; :class:`FloorPolicy` runs it in the
request-level simulator, where random cold starts, bursts inside an interval and draining show
whether it really meets the SLO — its attainment is reported as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput
from rlscale.sim.capacity import replica_capacity_rps
from rlscale.sim.profile_fit import low_load_ttft_s
from rlscale.sim.scenario import Scenario
from rlscale.sim.workload import Workload

SHORTFALL_PENALTY_USD = 1e4
"""Cost of one req/s of unserved demand for one interval in the objective (US dollars)."""

MIP_GAP = 1e-3
"""Relative optimality gap at which the solver stops (0.1 %)."""

NODE_LIMIT = 100
"""Branch-and-bound nodes per solve at most (deterministic, unlike a time limit): the best
schedule found and the proven lower bound are kept, and both are reported."""

TIME_LIMIT_S = 600.0
"""A safety limit on one solve's wall time (seconds)."""


@dataclass(frozen=True)
class FloorPool:
    """One pool as the floor sees it.

    Attributes:
        capacity_rps: requests/s one ready replica serves within the SLO.
        price_per_replica_hour: US dollars per replica-hour.
        lead_intervals: control intervals between a scale-up and the replica serving.
        min_replicas / max_replicas: limits; ready: replicas ready at the start.
        gpu_type / gpus_per_replica: what a replica holds.
    """

    capacity_rps: float
    price_per_replica_hour: float
    lead_intervals: int
    min_replicas: int
    max_replicas: int
    ready: int
    gpu_type: str
    gpus_per_replica: int


@dataclass(frozen=True)
class FloorSchedule:
    """The schedule: ``replicas[t][i]`` billed replicas in interval ``t``; its cost (US dollars
    over the horizon); ``bound_usd``, the solver's proven lower bound on any schedule's cost
    (equal to ``cost_usd`` when solved to optimality); and any demand it could not cover
    (req/s per interval)."""

    replicas: tuple[tuple[int, ...], ...]
    cost_usd: float
    bound_usd: float
    short_rps: tuple[float, ...]

    @property
    def gap(self) -> float:
        """How far the schedule's cost may lie above the optimum (fraction)."""
        return 0.0 if self.cost_usd <= 0 else max(0.0, 1.0 - self.bound_usd / self.cost_usd)


def solve_floor(demand_rps: Sequence[float] | NDArray[np.float64], pools: Sequence[FloorPool],
                inventory: dict[str, int], interval_s: float) -> FloorSchedule:
    """The cheapest schedule serving ``demand_rps`` (one value per interval, req/s)."""
    steps, count = len(demand_rps), len(pools)
    if steps == 0:
        return FloorSchedule((), 0.0, 0.0, ())
    # Variables: b[i, t] at i*steps + t; y[i, t] after them; then the slack s[t].
    nb = count * steps
    total = 2 * nb + steps
    hours = interval_s / 3600.0
    cost = np.zeros(total)
    lower, upper = np.zeros(total), np.zeros(total)
    for i, pool in enumerate(pools):
        cost[i * steps:(i + 1) * steps] = pool.price_per_replica_hour * hours
        lower[i * steps:(i + 1) * steps] = pool.min_replicas
        upper[i * steps:(i + 1) * steps] = pool.max_replicas
        upper[nb + i * steps:nb + (i + 1) * steps] = pool.max_replicas
    cost[2 * nb:] = SHORTFALL_PENALTY_USD
    upper[2 * nb:] = np.inf
    rows: list[tuple[dict[int, float], float, float]] = []
    for t, demand in enumerate(demand_rps):
        coefficients = {nb + i * steps + t: p.capacity_rps for i, p in enumerate(pools)}
        coefficients[2 * nb + t] = 1.0
        rows.append((coefficients, float(demand), np.inf))
        for gpu, gpus in inventory.items():
            members = {i * steps + t: float(p.gpus_per_replica)
                       for i, p in enumerate(pools) if p.gpu_type == gpu}
            if members:
                rows.append((members, -np.inf, float(gpus)))
    for i, pool in enumerate(pools):
        for t in range(steps):
            y = nb + i * steps + t
            if t < pool.lead_intervals:
                upper[y] = min(upper[y], pool.ready)
            for tau in range(max(0, t - pool.lead_intervals), t + 1):
                rows.append(({y: 1.0, i * steps + tau: -1.0}, -np.inf, 0.0))
    matrix = lil_matrix((len(rows), total))
    for r, (coefficients, _, _) in enumerate(rows):
        for column, value in coefficients.items():
            matrix[r, column] = value
    integrality = np.zeros(total)
    integrality[:2 * nb] = 1
    result = milp(cost, constraints=LinearConstraint(
        matrix.tocsr(), [r[1] for r in rows], [r[2] for r in rows]),
        integrality=integrality, bounds=Bounds(lower, upper),
        options={"mip_rel_gap": MIP_GAP, "node_limit": NODE_LIMIT,
                 "time_limit": TIME_LIMIT_S})
    if result.x is None:
        raise RuntimeError(f"floor: the mixed-integer program failed: {result.message}")
    x = np.asarray(result.x)
    billed = np.rint(x[:nb]).astype(int).reshape(count, steps)
    short = tuple(float(max(s, 0.0)) for s in x[2 * nb:])
    replicas = tuple(tuple(int(billed[i, t]) for i in range(count)) for t in range(steps))
    gpu_cost = float(sum(pools[i].price_per_replica_hour * hours * billed[i].sum()
                         for i in range(count)))
    bound = getattr(result, "mip_dual_bound", None)
    bound_usd = gpu_cost if bound is None or not math.isfinite(bound) else min(gpu_cost, bound)
    return FloorSchedule(replicas, gpu_cost, bound_usd, short)


def interval_demand(workload: Workload, interval_s: float, start_s: float,
                    steps: int) -> NDArray[np.float64]:
    """Requests/s arriving in each of ``steps`` intervals from ``start_s`` (workload clock)."""
    edges = start_s + interval_s * np.arange(steps + 1)
    counts, _ = np.histogram(workload.arrival_s, bins=edges)
    return counts.astype(float) / interval_s


def floor_pools(scenario: Scenario, workload: Workload, capacity_fraction: float,
                ready: Sequence[int], interval_s: float) -> list[FloorPool]:
    """The scenario's pools with capacities for ``workload``'s own length mix."""
    if len(workload):
        prompt = float(workload.prompt_tokens.mean())
        output = float(workload.output_tokens.mean())
        long_prompt = float(np.percentile(workload.prompt_tokens, 90))
    else:
        prompt, output, long_prompt = 1000.0, 200.0, 1000.0
    pools = []
    for pool, now_ready in zip(scenario.cluster.pools, ready, strict=True):
        profile = pool.profile
        fits_ttft = low_load_ttft_s(profile, long_prompt, 1) <= scenario.slo.ttft_s
        capacity = replica_capacity_rps(profile, prompt, output, scenario.slo.itl_s,
                                        capacity_fraction) if fits_ttft else 0.0
        pools.append(FloorPool(
            capacity_rps=capacity,
            price_per_replica_hour=pool.gpu_price * pool.gpus_per_replica,
            lead_intervals=math.ceil(pool.replica_cold_start.median_s / interval_s),
            min_replicas=pool.min_replicas, max_replicas=pool.max_replicas,
            ready=int(now_ready), gpu_type=pool.gpu_type,
            gpus_per_replica=pool.gpus_per_replica))
    return pools


class FloorPolicy:
    """Runs the floor's schedule in the simulator (needs :meth:`prepare`).

    Knobs:
        capacity_fraction: fraction of the profile's SLO-bound throughput per replica the
            schedule plans on (default 1.0: the bound itself; lower values give a safer, costlier
            schedule, tracing the floor's own cost-attainment curve).
    """

    name = "floor"

    def __init__(self, context: PolicyContext, scenario: Scenario, *,
                 capacity_fraction: float = 1.0) -> None:
        if not 0 < capacity_fraction <= 1:
            raise ValueError(f"floor: capacity_fraction must be in (0, 1], got "
                             f"{capacity_fraction}")
        self.context = context
        self.scenario = scenario
        self.capacity_fraction = capacity_fraction
        self._workload: Workload | None = None
        self._clock_start_s = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget the schedule (it is solved at the first decision)."""
        self.schedule: FloorSchedule | None = None
        self.pools: list[FloorPool] = []
        self._first_step = 0

    def prepare(self, workload: Workload, clock_start_s: float, **_: Any) -> None:
        """The episode's arrivals (on its own clock) and the clock time it starts at."""
        self._workload = workload
        self._clock_start_s = clock_start_s

    def _solve(self, observed: PolicyInput, workload: Workload) -> FloorSchedule:
        interval = self.context.interval_s
        start = observed.time_s - self._clock_start_s
        self._first_step = round(start / interval)
        steps = max(0, math.ceil((workload.duration_s - start) / interval))
        ready = [p.ready_replicas for p in observed.pools]
        self.pools = floor_pools(self.scenario, workload, self.capacity_fraction, ready, interval)
        demand = interval_demand(workload, interval, start, steps)
        return solve_floor(demand, self.pools, dict(self.scenario.cluster.gpu_inventory),
                           interval)

    def decide(self, observed: PolicyInput) -> Decision:
        """The schedule's replicas for this interval; weights by ready capacity."""
        if self._workload is None:
            return Decision(observed.desired, (1.0,) * len(observed.desired), False,
                            "NoForecast", "floor.prepare() was not called with the workload")
        if self.schedule is None:
            self.schedule = self._solve(observed, self._workload)
        step = round((observed.time_s - self._clock_start_s) / self.context.interval_s)
        index = min(max(step - self._first_step, 0), len(self.schedule.replicas) - 1)
        if index < 0:
            return Decision(observed.desired, (1.0,) * len(observed.desired), False,
                            "NoForecast", "floor: no interval left to schedule")
        replicas = self.schedule.replicas[index]
        weights = tuple(float(max(p.ready_replicas, 0)) * f.capacity_rps
                        for p, f in zip(observed.pools, self.pools, strict=True))
        if not any(weights):
            weights = tuple(float(r) * f.capacity_rps
                            for r, f in zip(replicas, self.pools, strict=True))
        short = self.schedule.short_rps[index]
        return Decision(replicas, weights, True, "Clairvoyant",
                        f"floor schedule step {index} (capacity x{self.capacity_fraction:g}, "
                        f"plan ${self.schedule.cost_usd:.2f}, bound "
                        f"${self.schedule.bound_usd:.2f}"
                        + (f", {short:.1f} req/s beyond the cluster" if short > 0 else "") + ")")
