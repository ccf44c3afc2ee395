"""Gymnasium environments over the simulated cluster.

Importing this package registers ``rlscale/LLMCluster-v0`` (the default scenario,
``hetero-3pool``). For another scenario use :func:`make_env`, which sets the episode length
from the scenario, or ``gymnasium.make("rlscale/LLMCluster-v0", scenario=...,
max_episode_steps=...)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlscale.envs.cluster_env import LLMClusterEnv
from rlscale.envs.config import EnvConfig, env_config
from rlscale.sim.scenario import DEFAULT_SCENARIO, Scenario, load_scenario

ENV_ID = "rlscale/LLMCluster-v0"

__all__ = ["ENV_ID", "EnvConfig", "LLMClusterEnv", "env_config", "make_env"]


def make_env(scenario: str | Scenario = DEFAULT_SCENARIO, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` of ``rlscale/LLMCluster-v0`` with the scenario's episode length.

    ``kwargs`` go to :class:`LLMClusterEnv` (``overrides``, ``workload``, ``load_scale``,
    ``time_offset_s``).
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    steps = env_config(loaded, kwargs.get("overrides")).max_episode_steps
    return gym.make(ENV_ID, scenario=loaded, max_episode_steps=steps, **kwargs)


if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="rlscale.envs.cluster_env:LLMClusterEnv",
        max_episode_steps=env_config(load_scenario(DEFAULT_SCENARIO)).max_episode_steps,
        kwargs={"scenario": DEFAULT_SCENARIO},
    )
