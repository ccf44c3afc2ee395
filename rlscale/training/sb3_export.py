"""Export a stable-baselines3 ``PPO`` / sb3-contrib ``MaskablePPO`` actor as a policy bundle.

The only part of :mod:`rlscale.agents.bundle` that needs torch and stable-baselines3, imported
when :func:`export_sb3` is called (training code; the runtime never imports this module's
dependencies).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.bundle.format import (
    ACTIVATIONS,
    ActorNetwork,
    BundleError,
    BundleSpec,
    Normalization,
)
from rlscale.agents.bundle.io import library_versions, save_bundle


def export_sb3(model: Any, vec_normalize: Any | None, path: str | os.PathLike[str],
               spec: BundleSpec) -> Path:
    """Export a stable-baselines3 ``PPO`` / sb3-contrib ``MaskablePPO`` ``MlpPolicy`` actor.

    Takes ``model.policy.mlp_extractor.policy_net`` (Linear + Tanh/ReLU layers) and
    ``model.policy.action_net``; the observation must be a flat ``Box`` read through SB3's
    ``FlattenExtractor`` (an identity for 1-D observations). ``vec_normalize``: the
    ``VecNormalize`` the model was trained in (its ``obs_rms``, ``clip_obs``, ``epsilon``),
    or None. ``spec``: everything else the bundle records (its ``library_versions`` are
    replaced by those of python, numpy, rlscale, torch, stable-baselines3, sb3-contrib and
    gymnasium). Imports torch (only here).

    Raises:
        BundleError: the model is not such a policy or does not fit the arguments.
    """
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from torch import nn

    policy = model.policy
    shape = getattr(model.observation_space, "shape", None)
    if shape is None or len(shape) != 1:
        raise BundleError(f"export_sb3: need a 1-D Box observation space, got "
                          f"{model.observation_space}")
    extractor = getattr(policy, "pi_features_extractor", None)
    if not isinstance(extractor, FlattenExtractor):
        raise BundleError(f"export_sb3: the policy's features extractor is "
                          f"{type(extractor).__name__}; only FlattenExtractor (MlpPolicy) "
                          f"can be exported")
    nvec = [int(n) for n in getattr(model.action_space, "nvec", [])]
    if nvec != list(spec.action.nvec):
        raise BundleError(f"export_sb3: the model's action space {model.action_space} does not "
                          f"match the action spec's nvec {list(spec.action.nvec)}")
    activation_fn = getattr(policy, "activation_fn", None)
    activation = ("tanh" if activation_fn is nn.Tanh else "relu" if activation_fn is nn.ReLU
                  else "")
    weights: list[NDArray[np.float32]] = []
    modules = list(policy.mlp_extractor.policy_net)
    for i, module in enumerate(modules):
        expected = nn.Linear if i % 2 == 0 else activation_fn
        if type(module) is not expected or (i % 2 and activation not in ACTIVATIONS):
            raise BundleError(f"export_sb3: policy_net layer {i} is {module}; expected "
                              f"alternating Linear and Tanh/ReLU layers")
        if isinstance(module, nn.Linear):
            weights += [_to_numpy(module.weight), _to_numpy(module.bias)]
    if len(modules) % 2:
        raise BundleError("export_sb3: policy_net ends with a Linear layer without activation")
    head = policy.action_net
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise BundleError(f"export_sb3: action_net is {head}; expected a Linear layer")
    weights += [_to_numpy(head.weight), _to_numpy(head.bias)]
    network = ActorNetwork(weights, activation or "tanh", _vec_normalization(vec_normalize))
    versions = library_versions(("torch", "stable-baselines3", "sb3-contrib", "gymnasium"))
    return save_bundle(path, network, replace(spec, library_versions=versions))


def _to_numpy(parameter: Any) -> NDArray[np.float32]:
    return np.array(parameter.detach().cpu().numpy(), dtype=np.float32)


def _vec_normalization(vec_normalize: Any | None) -> Normalization | None:
    if vec_normalize is None or not getattr(vec_normalize, "norm_obs", False):
        return None
    rms = vec_normalize.obs_rms
    if not hasattr(rms, "mean") or isinstance(rms, Mapping):
        raise BundleError("export_sb3: VecNormalize with dict observations is not supported")
    return Normalization(np.asarray(rms.mean, np.float64).copy(),
                         np.asarray(rms.var, np.float64).copy(),
                         float(vec_normalize.clip_obs), float(vec_normalize.epsilon))
