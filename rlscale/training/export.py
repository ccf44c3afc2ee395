"""Export a training run's model as a policy bundle, with the metadata the run knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.bundle.format import BundleSpec
from rlscale.envs.cluster_env import LLMClusterEnv
from rlscale.sim.scenario import Scenario
from rlscale.training.config import TrainConfig
from rlscale.training.sb3_export import export_sb3


def export_run_bundle(model: Any, vec_normalize: Any, path: Path, config: TrainConfig,
                      scenario: Scenario,
                      seen: tuple[NDArray[np.float64], NDArray[np.float64]] | None,
                      evaluation: dict[str, Any]) -> Path:
    """Write ``model`` (with its ``VecNormalize`` statistics) as a bundle at ``path``.

    ``seen`` is the (low, high) range of raw observations met in training; without one the
    observation space's bounds are used (the shield then never falls back for range).
    """
    env = LLMClusterEnv(scenario, overrides={"reward": dict(config.reward)})
    low, high = seen if seen is not None else (env.builder.low, env.builder.high)
    scenario_yaml = ""
    if scenario.source and Path(scenario.source).is_file():
        scenario_yaml = Path(scenario.source).read_text()
    else:
        from importlib import resources

        folder = resources.files("rlscale").joinpath("scenarios")
        candidate = folder.joinpath(f"{scenario.name}.yaml")
        if candidate.is_file():
            scenario_yaml = candidate.read_text()
    spec = BundleSpec(
        env.policy_context(), env.codec.spec, low, high, env.observation_names,
        env.observation_units, scenario.name, scenario_yaml, config.as_dict(), evaluation)
    return export_sb3(model, vec_normalize, path, spec)
