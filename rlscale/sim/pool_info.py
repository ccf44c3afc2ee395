"""What the observation knows about a scenario's pools: the one recipe from a scenario (and
the workload its capacities are figured for) to
:class:`~rlscale.metrics.observation_config.PoolInfo` and
:class:`~rlscale.metrics.observation_config.ObservationConfig`.

The environment builds its observation config with it, and the twin writes the same pools into
the controller config it generates, so a policy sees the same normalization in both.
"""

from __future__ import annotations

from rlscale.metrics.features import CURRENT_VERSION
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo
from rlscale.sim.capacity import (
    replica_capacity_rps,
    replica_decode_tok_s,
    replica_prefill_tok_s,
)
from rlscale.sim.scenario import Scenario
from rlscale.sim.workload import Workload

EMPTY_WORKLOAD_LENGTHS = (1000.0, 200.0)
"""Mean prompt and output tokens assumed for a workload with no requests."""


def mean_lengths(workload: Workload) -> tuple[float, float]:
    """Mean prompt and output tokens of ``workload`` (:data:`EMPTY_WORKLOAD_LENGTHS` when it
    has no requests)."""
    if len(workload) == 0:
        return EMPTY_WORKLOAD_LENGTHS
    return float(workload.prompt_tokens.mean()), float(workload.output_tokens.mean())


def pool_infos(scenario: Scenario, workload: Workload) -> tuple[PoolInfo, ...]:
    """Each pool's static facts, in the scenario's order: GPUs, limits, price per
    replica-hour, the GPU inventory of its type, ``capacity_rps`` (requests/s one replica
    serves within the inter-token SLO at ``workload``'s mean lengths), and the token capacities
    ``prefill_tok_s`` and ``decode_tok_s`` (tokens/s per replica, from the profile and the SLO
    alone)."""
    prompt, output = mean_lengths(workload)
    spec = scenario.cluster
    return tuple(PoolInfo(
        name=p.name, gpu_type=p.gpu_type, gpus_per_replica=p.gpus_per_replica,
        max_replicas=p.max_replicas, max_num_seqs=p.profile.max_num_seqs,
        price_per_replica_hour=p.gpu_price * p.gpus_per_replica,
        capacity_rps=replica_capacity_rps(p.profile, prompt, output, scenario.slo.itl_s),
        gpu_inventory=spec.gpu_inventory[p.gpu_type],
        prefill_tok_s=replica_prefill_tok_s(p.profile),
        decode_tok_s=replica_decode_tok_s(p.profile, scenario.slo.itl_s)) for p in spec.pools)


def observation_config(scenario: Scenario, workload: Workload, *, long_window_s: float,
                       day_length_s: float,
                       feature_version: int = CURRENT_VERSION) -> ObservationConfig:
    """The observation config of ``scenario``: :func:`pool_infos`, the SLO, the windows (both
    in seconds) and the feature version (the current one unless told)."""
    return ObservationConfig(pools=pool_infos(scenario, workload),
                             slo_ttft_s=scenario.slo.ttft_s, slo_itl_s=scenario.slo.itl_s,
                             long_window_s=long_window_s, day_length_s=day_length_s,
                             feature_version=feature_version)
