"""``rlscale/LLMCluster-v0``: joint autoscaling and routing of vLLM pools, as a Gymnasium env."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from rlscale.agents.policy import Decision, PolicyContext, PolicyInput, with_replica_limits
from rlscale.agents.shield import Shield
from rlscale.agents.window import ObservationWindow
from rlscale.envs.actions import ActionCodec, DecodedAction
from rlscale.envs.config import EnvConfig, env_config
from rlscale.envs.episode_workload import EpisodeWorkloads
from rlscale.envs.faults import schedule_faults, slow_cold_starts
from rlscale.envs.splits import Window, scenario_splits
from rlscale.envs.step_metrics import arrived_between, ended_since
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig
from rlscale.metrics.snapshot import ClusterSnapshot
from rlscale.sim.backend import AnyCluster, make_cluster, ready_counts, snapshot_of
from rlscale.sim.cluster import Cluster
from rlscale.sim.pool_info import observation_config, pool_infos
from rlscale.sim.scenario import Scenario, load_scenario
from rlscale.sim.workload import Workload, rate_scaled
from rlscale.sim.workload.mixture import WorkloadMixture


@dataclasses.dataclass(frozen=True)
class ExpertEpisode:
    """A teacher's view of one training episode (see :meth:`LLMClusterEnv.expert_episode`)."""

    context: PolicyContext
    scenario: Scenario
    workload: Workload | None
    offset_s: float
    """Simulated clock time (s) at which the workload's time 0 falls."""


class LLMClusterEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """Scale and route a cluster of vLLM pools; observe it the way Kubernetes and vLLM show it.

    ## Description
    A simulated Kubernetes cluster serves an LLM from several pools of vLLM replicas (one model
    on different GPU types, prices and inventories, see :mod:`rlscale.sim`). Every
    ``control.interval_s`` simulated seconds the agent sets, for every pool, the replica count
    (Deployment ``spec.replicas``) and the share of traffic (HTTPRoute ``backendRefs`` weight).
    New replicas are pending until GPUs of their type are free, then cold-start for minutes;
    removed replicas drain. Requests arrive from the scenario's workload (real traces or
    generators fitted to them).

    ## Action space
    ``MultiDiscrete([2k+1] * P + [L] * P)`` for ``P`` pools, ``k = control.replica_step``,
    ``L = control.weight_levels``: entry ``i < P`` changes pool ``i``'s replicas by
    ``action[i] - k``; entry ``P + i`` sets its routing weight to ``action[P+i] / (L-1)``.
    Weights are normalized over pools with ready replicas; if every level is 0, all pools get
    equal weight. :meth:`action_masks` gives the flat mask (MaskablePPO's layout) of changes that
    stay within ``[min_replicas, max_replicas]`` and the GPU inventory; an unmasked agent's
    out-of-range action is clamped and ``info["clamped"]`` says so.

    ## Observation space
    ``Box(low, high, (N,), float32)`` built by :class:`rlscale.metrics.observation.
    ObservationBuilder` from the last snapshots of vLLM pod metrics and Deployment status —
    the same builder the in-cluster controller runs on scraped ``/metrics``. Per pool: ready,
    starting, pending and draining replicas (over max), arrival rate over the short and long
    window (over capacity at max replicas), prompt and generation token rates, running and
    waiting requests per replica, KV-cache usage, interval TTFT and inter-token percentiles
    over the SLO (from histogram bucket deltas), SLO-violation shares, whether it saw traffic,
    its routing share, free GPUs of its type, its price; globally the total arrival rate and
    the time of day (sin, cos). ``env.observation_names`` and ``env.observation_units`` list
    every entry; the table with ranges is in :mod:`rlscale.metrics.observation`.

    ## Rewards
    ``r = reward.slo * A - reward.cost * C / C_max - reward.churn * changes / P`` where ``A`` is
    the share of requests ending in the step that met both the TTFT and the inter-token SLO
    (failures are misses; 1 if none ended), ``C`` the step's GPU cost in dollars, ``C_max`` the
    cost of every pool at ``max_replicas`` for one step, ``changes`` the number of pools whose
    replica count changed. Defaults: slo 1.0, cost 0.5, churn 0.01.

    ## Starting state
    Each reset samples (from the env's seeded generator) a time offset in the workload's day,
    a load scale in ``episode.load_scale``, the workload window and the faults, starts the
    scenario's initial replicas warm, and runs ``control.warmup_steps`` intervals before the
    first observation.

    ## Episode end
    Never terminates. Truncates after ``max_episode_steps`` steps (default the scenario's
    ``episode.duration_s / control.interval_s``), like the ``TimeLimit`` that ``gymnasium.make``
    adds from the registration: a bare ``LLMClusterEnv()`` and ``gymnasium.make`` end their
    episodes at the same step. For longer episodes set ``episode.duration_s`` in ``overrides``
    (or pass ``max_episode_steps`` to this class, not only to ``gymnasium.make``).

    ## Arguments
    ``scenario``: a built-in name or YAML path (default ``hetero-3pool``) or a
    :class:`~rlscale.sim.scenario.Scenario`; ``overrides``: mapping of env sections
    (``{"reward": {"cost": 1.0}}``); ``workload``: a fixed workload replacing the scenario's
    (evaluation on held-out traces); ``load_scale`` / ``time_offset_s``: fix what reset would
    sample; ``step_by_step``: engines advance one step per event (the slow reference mode);
    ``window``: a held-out :class:`~rlscale.envs.splits.Window` to replay (evaluation);
    ``observation``: the observation config to build observations with — a policy bundle's
    own (its capacities and windows, as the controller uses them), with the scenario's
    replica limits — instead of one figured from this scenario's workload; ``workloads``: a
    :class:`~rlscale.sim.workload.mixture.WorkloadMixture` each training episode draws its
    workload from (family, parameters, load as a fraction of capacity) instead of the
    scenario's workload and ``episode.load_scale`` (held-out windows still replay theirs);
    ``max_episode_steps``: steps until ``truncated`` (default from the scenario's episode).
    ``overrides={"engine": {"mode": "fast"}}`` (or ``engine: {mode: fast}`` in the scenario)
    runs the fast engine (:mod:`rlscale.sim.fluid`): same spaces, reward, shield and
    observation code, engines approximated as fluids; for bulk training rollouts only.

    ## Info
    ``time_s``, ``requests`` (ended in the step), ``completed``, ``failed``, ``slo_attainment``,
    TTFT / inter-token / end-to-end ``p50/p90/p99`` (seconds), ``cost_usd``, ``gpu_hours``,
    ``replicas`` (desired), ``ready``, ``weights`` (effective shares), ``clamped``,
    ``reward_terms``, ``shield`` (the shield's interventions this step) and ``faults``
    (faults injected so far).

    ## Example
    >>> import gymnasium as gym, rlscale.envs
    >>> env = gym.make("rlscale/LLMCluster-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, scenario: str | Scenario = "hetero-3pool",
                 overrides: dict[str, Any] | None = None, *, workload: Workload | None = None,
                 load_scale: float | None = None, time_offset_s: float | None = None,
                 step_by_step: bool = False, window: Window | None = None,
                 observation: ObservationConfig | None = None,
                 workloads: WorkloadMixture | None = None,
                 max_episode_steps: int | None = None) -> None:
        super().__init__()
        self.step_by_step = step_by_step
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.config: EnvConfig = env_config(self.scenario, overrides)
        self.max_episode_steps = (self.config.max_episode_steps if max_episode_steps is None
                                  else max_episode_steps)
        """Steps after which :meth:`step` reports ``truncated`` (it keeps simulating if called
        again)."""
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: expected an integer >= 1, got "
                             f"{self.max_episode_steps}")
        self.episode_steps = 0
        self.episode_family = ""
        """The workload family of this episode (a mixture's draw; empty otherwise)."""
        self.fixed_load_scale = load_scale
        spec = self.scenario.cluster
        control = self.config.control
        self.codec = ActionCodec(spec, control.replica_step, control.weight_levels)
        self.splits = scenario_splits(self.scenario, self.config.episode.duration_s)
        self.episodes = EpisodeWorkloads(self.scenario, self.config, self.splits, window=window,
                                         fixed_workload=workload, fixed_offset_s=time_offset_s,
                                         mixture=workloads)
        """Where each episode's requests come from."""
        self.pool_count = len(spec.pools)
        if observation is not None:
            self.observation_config = with_replica_limits(
                observation, [p.max_replicas for p in spec.pools])
            names = [p.name for p in spec.pools]
            if [p.name for p in observation.pools] != names:
                raise ValueError(f"observation config is for pools "
                                 f"{[p.name for p in observation.pools]}, the scenario has "
                                 f"{names}")
        else:
            sample = workload
            if sample is None:  # the capacities are figured for a fixed-seed sample
                sample = self.scenario.build_workload(np.random.default_rng(0))
            self.observation_config = observation_config(
                self.scenario, sample, long_window_s=control.history_s,
                day_length_s=control.day_length_s)
        self.capacity_rps = tuple(p.capacity_rps for p in self.observation_config.pools)
        self.builder = ObservationBuilder(self.observation_config)
        self.lookback = ObservationWindow(self.builder, control.interval_s)
        """The snapshots the observation looks back on (the controller keeps the same)."""
        self.shield = Shield(self.policy_context())
        """Every action and decision passes the shield's rules before it reaches the cluster."""
        self.observation_names = self.builder.names
        self.observation_units = self.builder.units
        self.observation_space = gym.spaces.Box(self.builder.low, self.builder.high,
                                                dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete(self.codec.nvec)
        self.step_cost_max = sum(p.gpu_price * p.gpus_per_replica * p.max_replicas
                                 for p in spec.pools) * control.interval_s / 3600.0
        self.cluster: AnyCluster | None = None
        self.offset_s = 0.0
        self.episode_load_scale = 1.0
        self.episode_workload: Workload | None = None  # what the cluster is sent (rate-scaled)
        self.episode_cluster = self.scenario.cluster  # this episode's (a mixture may cut GPUs)
        self.episode_replica_changes = 0
        self._scored_start_s = 0.0
        self._scored_cost_start = self._scored_gpu_hours_start = 0.0
        self._scored_kv_start = (0.0, 0.0)
        self._log_start = 0
        self._cost_before = 0.0
        self._gpu_hours_before = 0.0

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode: sample window, load scale and faults; warm up; observe."""
        super().reset(seed=seed)
        rng = self.np_random
        episode = self.config.episode
        control = self.config.control
        horizon_s = episode.duration_s + control.interval_s * control.warmup_steps
        drawn = self.episodes.from_mixture
        episode_draw = self.episodes.draw(horizon_s, rng)
        workload = self.episode_workload = episode_draw.workload
        self.offset_s, self.episode_family = episode_draw.offset_s, episode_draw.family
        self.episode_load_scale = (self.fixed_load_scale if self.fixed_load_scale is not None
                                   else 1.0 if drawn  # the mixture's load draw scaled it
                                   else float(rng.uniform(*episode.load_scale)))
        if self.episode_load_scale != 1.0:
            workload = self.episode_workload = rate_scaled(workload, self.episode_load_scale,
                                                           rng)
        cluster_rng = np.random.default_rng(int(rng.integers(2**63)))
        self.episode_cluster = episode_draw.cluster or self.scenario.cluster
        self.cluster = make_cluster(self.config.engine.mode, self.episode_cluster, workload,
                                    cluster_rng, step_by_step=self.step_by_step)
        if isinstance(self.cluster, Cluster):
            schedule_faults(self.cluster, self.config.faults, horizon_s, rng)
        else:  # the config allows the fast engine only the faults it models
            slow_cold_starts(self.cluster, self.config.faults, rng)
        self.lookback.clear()
        self._log_start = 0
        self._cost_before = self._gpu_hours_before = 0.0
        self._record_snapshot()
        for _ in range(control.warmup_steps):
            self._advance()
        self._mark_step_start(*self._totals())
        self._scored_start_s = self.cluster.now_s
        self._scored_cost_start = self._cost_before
        self._scored_gpu_hours_start = self._gpu_hours_before
        self._scored_kv_start = self._cluster().kv_integrals()
        self.episode_replica_changes = 0
        self.episode_steps = 0
        return self.lookback.observe(), self._info(None, {}, {})

    def step(self, action: NDArray[np.int64]) -> tuple[
            NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Apply the joint action, simulate one control interval, observe and score it."""
        cluster = self._cluster()
        desired = list(cluster.desired)
        return self._run_step(self.codec.decode(action, desired, cluster.gpu_total), desired)

    def step_decision(self, decision: Decision) -> tuple[
            NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Like :meth:`step`, with a policy's :class:`~rlscale.agents.policy.Decision` instead
        of an action index: any replica counts and weights, clamped to the same limits. An
        invalid decision keeps the current replicas and weights."""
        cluster = self._cluster()
        desired = list(cluster.desired)
        if decision.valid:
            decoded = self.codec.clamp(decision.replicas, decision.weights, desired,
                                       cluster.gpu_total)
        else:
            decoded = DecodedAction(tuple(desired), tuple(cluster.router.weights), False, False)
        observation, reward, terminated, truncated, info = self._run_step(decoded, desired)
        info.update(decision_valid=decision.valid, decision_reason=decision.reason,
                    decision_message=decision.message)
        return observation, reward, terminated, truncated, info

    def policy_context(self) -> PolicyContext:
        """What a heuristic policy needs to know about this environment's pools and SLO."""
        return PolicyContext(self.observation_config,
                             tuple(p.min_replicas for p in self.scenario.cluster.pools),
                             self.config.control.interval_s)

    def expert_episode(self) -> ExpertEpisode:
        """What a teacher for imitation may know of the current episode: :meth:`expert_context`,
        the scenario, and the requests the cluster is being sent (the future included, for a
        clairvoyant teacher such as the cost floor), on the clock that starts at ``offset_s``.
        Privileged, like :meth:`expert_context`: never what a deployed policy sees."""
        scenario = dataclasses.replace(self.scenario, cluster=self.episode_cluster)
        return ExpertEpisode(self.expert_context(), scenario, self.episode_workload,
                             self.offset_s)

    def expert_context(self) -> PolicyContext:
        """:meth:`policy_context` with each pool's ``capacity_rps`` figured for this episode's
        own mean lengths: a privileged teacher for imitation (the heuristic expert scales
        long prompts' pools for what they really serve), never what a deployed policy sees."""
        context = self.policy_context()
        if self.episode_workload is None:
            return context
        figured = pool_infos(self.scenario, self.episode_workload)
        pools = tuple(dataclasses.replace(p, capacity_rps=f.capacity_rps)
                      for p, f in zip(context.observation.pools, figured, strict=True))
        return dataclasses.replace(context, observation=dataclasses.replace(
            context.observation, pools=pools))

    def policy_input(self, observation: NDArray[np.float32] | None = None) -> PolicyInput:
        """The :class:`~rlscale.agents.policy.PolicyInput` for the current state."""
        return self.lookback.policy_input(self._cluster().desired, vector=observation)

    def _run_step(self, wanted: DecodedAction, desired: list[int]) -> tuple[
            NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        cluster = self._cluster()
        shielded = self.shield.apply(Decision(wanted.replicas, wanted.weights),
                                     self.policy_input(np.empty(0, dtype=np.float32)))
        final = self.codec.clamp(shielded.decision.replicas, shielded.decision.weights, desired,
                                 cluster.gpu_total)
        decoded = DecodedAction(final.replicas, final.weights, wanted.clamped or final.clamped,
                                wanted.all_weights_zero)
        self._apply(decoded, desired)
        self._advance()
        metrics = ended_since(cluster.log, self._log_start, self.scenario.slo)
        cost, gpu_hours = self._totals()
        step_cost, step_gpu_hours = cost - self._cost_before, gpu_hours - self._gpu_hours_before
        changes = sum(1 for old, new in zip(desired, decoded.replicas, strict=True) if old != new)
        reward_cfg = self.config.reward
        terms = {
            "slo": reward_cfg.slo * metrics["slo_attainment"],
            "cost": -reward_cfg.cost * step_cost / self.step_cost_max,
            "churn": -reward_cfg.churn * changes / self.pool_count,
        }
        reward = float(sum(terms.values()))
        metrics.update(cost_usd=step_cost, gpu_hours=step_gpu_hours, replica_changes=changes)
        self.episode_replica_changes += changes
        self._mark_step_start(cost, gpu_hours)
        observation = self.lookback.observe()
        info = self._info(decoded, metrics, terms)
        info["shield"] = list(shielded.interventions)
        self.episode_steps += 1
        return observation, reward, False, self.episode_steps >= self.max_episode_steps, info

    def action_masks(self) -> NDArray[np.bool_]:
        """Allowed choices of every sub-action, flattened (sb3-contrib MaskablePPO's layout)."""
        cluster = self._cluster()
        return self.codec.masks(cluster.desired, cluster.gpu_total)

    # ------------------------------------------------------------------ internals
    def episode_summary(self, *, drain: bool = True) -> dict[str, Any]:
        """Headline metrics of the episode after warm-up (what evaluation reports).

        Cost, GPU-hours and KV usage cover the scored time; with ``drain`` the requests still
        in flight are run to completion (replicas unchanged, cost not counted) so that every
        request that arrived in the scored time is judged.
        """
        cluster = self._cluster()
        end_s = cluster.now_s
        scored_s = max(end_s - self._scored_start_s, 1e-9)
        cost = sum(cluster.cost_usd(i) for i in range(self.pool_count)) - self._scored_cost_start
        gpu_hours = sum(cluster.gpu_hours(i) for i in range(self.pool_count)) - (
            self._scored_gpu_hours_start)
        kv_seconds, ready_seconds = (now - start for now, start in zip(
            self._cluster().kv_integrals(), self._scored_kv_start, strict=True))
        if drain:
            cluster.run_to_completion(max_s=end_s + 4 * 3600.0)
        requests = arrived_between(cluster.log.arrays(), self._scored_start_s, end_s,
                                   self.scenario.slo)
        order = ("requests", "completed", "failed", "slo_attainment")
        return {**{key: requests.pop(key) for key in order},
                "cost_usd": cost, "gpu_hours": gpu_hours,
                "kv_utilization": kv_seconds / ready_seconds if ready_seconds > 0 else 0.0,
                "throughput_tok_s": requests.pop("throughput_tok_s"),
                "scaling_actions": self.episode_replica_changes, "scored_s": scored_s,
                **requests}

    def _cluster(self) -> AnyCluster:
        if self.cluster is None:
            raise RuntimeError("call reset() before step() or action_masks()")
        return self.cluster

    def _apply(self, decoded: DecodedAction, desired: list[int]) -> None:
        cluster = self._cluster()
        for pool, (old, new) in enumerate(zip(desired, decoded.replicas, strict=True)):
            if old != new:
                cluster.set_replicas(pool, new)
        if list(decoded.weights) != cluster.router.weights:
            cluster.set_weights(list(decoded.weights))

    def _advance(self) -> None:
        cluster = self._cluster()
        cluster.run_until(cluster.now_s + self.config.control.interval_s)
        self._record_snapshot()

    def _record_snapshot(self) -> None:
        cluster = self._cluster()
        snapshot = snapshot_of(cluster, self.offset_s)
        dropout = self.config.faults.metric_dropout_prob
        if dropout > 0 and snapshot.pods and self.np_random.random() < dropout:
            lost = int(self.np_random.integers(len(snapshot.pods)))
            snapshot = ClusterSnapshot(snapshot.time_s, snapshot.pools,
                                       snapshot.pods[:lost] + snapshot.pods[lost + 1:],
                                       snapshot.free_gpus)
            cluster.fault_log.append((cluster.now_s, "metric_dropout"))
        self.lookback.append(snapshot)

    def _totals(self) -> tuple[float, float]:
        """The cluster's cost (US dollars) and GPU-hours so far."""
        cluster = self._cluster()
        gpu_hours = [cluster.gpu_hours(i) for i in range(self.pool_count)]
        cost = sum(hours * pool.gpu_price for hours, pool in zip(gpu_hours, cluster.pools,
                                                                 strict=True))
        return cost, sum(gpu_hours)

    def _mark_step_start(self, cost: float, gpu_hours: float) -> None:
        """A step starts now, with the cluster's ``cost`` and ``gpu_hours`` so far."""
        self._log_start = len(self._cluster().log)
        self._cost_before, self._gpu_hours_before = cost, gpu_hours

    def _info(self, decoded: DecodedAction | None, metrics: dict[str, Any],
              terms: dict[str, float]) -> dict[str, Any]:
        cluster = self._cluster()
        return {
            "time_s": cluster.now_s,
            **metrics,
            "replicas": list(cluster.desired),
            "ready": ready_counts(cluster),
            "weights": cluster.router.effective_weights(),
            "clamped": bool(decoded.clamped) if decoded else False,
            "all_weights_zero": bool(decoded.all_weights_zero) if decoded else False,
            "reward_terms": terms,
            "faults": list(cluster.fault_log),
            "load_scale": self.episode_load_scale,
            "family": self.episode_family,
            "gpu_inventory": dict(self.episode_cluster.gpu_inventory),
        }
