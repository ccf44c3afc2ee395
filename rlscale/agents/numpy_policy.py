"""The PPO policy at inference: a bundle's actor MLP in numpy, behind the ``Policy`` protocol.

:class:`BundlePolicy` does what stable-baselines3 does with ``predict(obs, deterministic=True,
action_masks=masks)`` on a ``VecNormalize``-normalized observation, with numpy alone:

1. normalize like ``VecNormalize.normalize_obs``:
   ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``, then round to float32
   (SB3 feeds torch float32);
2. run the MLP (``tanh``/``relu`` hidden layers, a linear action head) in float64;
3. split the logits by sub-action (``nvec``), mask replica changes that would leave
   ``[min_replicas, max_replicas]`` of the currently desired replicas (as the env's
   ``action_masks`` does; the GPU inventory is the shield's business), take each argmax;
4. decode: replicas ``desired + index - replica_step``, weights ``level / (L-1)`` (every level
   0: all weights 1).

Masks and decoding are :mod:`rlscale.agents.action_space`'s, as in the environment. Imports
numpy, the standard library, :mod:`rlscale.agents.policy`, :mod:`rlscale.agents.action_space`,
:mod:`rlscale.agents.bundle` and :mod:`rlscale.metrics` only: the in-cluster controller runs
it without torch, stable-baselines3 or the simulator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlscale.agents import reasons
from rlscale.agents.bundle.format import Bundle
from rlscale.agents.bundle.io import load_bundle
from rlscale.agents.policy import Decision, PolicyContext, PolicyInput

FloatArray = NDArray[np.float64]

MASKED_LOGIT = -1e8
"""What masked choices' logits become (sb3-contrib's value)."""

_ACTIVATIONS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


class BundlePolicy:
    """A bundle's deterministic policy as a :class:`~rlscale.agents.policy.Policy`.

    Attributes:
        name: the policy name (the bundle's, ``ppo`` by default).
        bundle: the verified :class:`~rlscale.agents.bundle.format.Bundle`.
        context: pools, SLO, replica limits and interval the policy was trained for.
    """

    def __init__(self, bundle: Bundle, *, name: str | None = None) -> None:
        self.bundle = bundle
        self.name = name or bundle.name
        self.context: PolicyContext = bundle.policy_context()
        self._layers = [(np.asarray(layer.weight, np.float64).T.copy(),
                         np.asarray(layer.bias, np.float64)) for layer in
                        (*bundle.hidden, bundle.head)]
        self._activation = _ACTIVATIONS[bundle.activation]
        self._spec = bundle.action
        self._splits = np.cumsum(self._spec.nvec)[:-1]
        self._pools = self._spec.count

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expect_pools: Sequence[str] | None = None,
             expect_observation_size: int | None = None,
             name: str | None = None) -> BundlePolicy:
        """Load and verify the bundle at ``path`` (see :func:`~rlscale.agents.bundle.io.
        load_bundle`; raises its ``BundleError``)."""
        return cls(load_bundle(path, expect_pools=expect_pools,
                               expect_observation_size=expect_observation_size), name=name)

    @property
    def observation_range(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(seen_low, seen_high)``: the range of every entry in training (for the shield)."""
        return self.bundle.seen_low, self.bundle.seen_high

    def reset(self) -> None:
        """Nothing to forget: the policy is a function of the current observation."""

    def unfamiliarity(self, vector: ArrayLike) -> float:
        """Mean absolute z-score of ``vector`` under the training statistics (as clipped for
        the network); 0 without normalization statistics. See :mod:`rlscale.agents.
        familiarity`."""
        norm = self.bundle.normalization
        if norm is None:
            return 0.0
        return float(np.mean(np.abs(norm.apply(vector))))

    # ------------------------------------------------------------------ the network
    def normalize(self, vector: ArrayLike) -> FloatArray:
        """The network's input: VecNormalize's normalization (if any), rounded to float32."""
        values = np.asarray(vector, dtype=np.float64)
        if values.shape[-1:] != (self.bundle.observation_size,):
            raise ValueError(f"{self.name}: observation has shape {values.shape}; expected "
                             f"{self.bundle.observation_size} entries")
        norm = self.bundle.normalization
        scaled = norm.apply(values) if norm is not None else values
        return scaled.astype(np.float32).astype(np.float64)

    def logits(self, vector: ArrayLike) -> FloatArray:
        """Unmasked action logits (``sum(nvec)``) of one raw observation, or of a batch."""
        x = self.normalize(vector)
        for weight, bias in self._layers[:-1]:
            x = self._activation(x @ weight + bias)
        weight, bias = self._layers[-1]
        out: FloatArray = x @ weight + bias
        return out

    def masks(self, desired: Sequence[int]) -> NDArray[np.bool_]:
        """Flat action mask (MaskablePPO's layout) for the currently ``desired`` replicas."""
        return self._spec.masks(desired, self.context.min_replicas, self.context.max_replicas)

    def action(self, observation_vector: ArrayLike, desired: Sequence[int]) -> NDArray[np.int64]:
        """The deterministic ``MultiDiscrete`` action: each sub-action's argmax after masking."""
        if len(desired) != self._pools:
            raise ValueError(f"{self.name}: {len(desired)} desired replica counts for "
                             f"{self._pools} pools")
        logits = self.logits(observation_vector)
        if logits.ndim != 1:
            raise ValueError(f"{self.name}: action() takes one observation, got shape "
                             f"{np.shape(observation_vector)}")
        masked = np.where(self.masks(desired), logits, MASKED_LOGIT)
        return np.array([int(np.argmax(part)) for part in np.split(masked, self._splits)],
                        dtype=np.int64)

    # ------------------------------------------------------------------ Policy protocol
    def decide(self, observed: PolicyInput) -> Decision:
        """Replicas and routing weights for ``observed`` (reason ``Policy``); an invalid
        decision (reason ``BadInput``) if the observation or the replica counts do not fit."""
        desired = tuple(observed.desired)
        vector = np.asarray(observed.vector)
        problem = ""
        if len(desired) != self._pools:
            problem = f"{len(desired)} desired replica counts for {self._pools} pools"
        elif vector.shape != (self.bundle.observation_size,):
            problem = (f"observation has shape {vector.shape}, expected "
                       f"({self.bundle.observation_size},)")
        elif not np.all(np.isfinite(vector)):
            problem = "observation has NaN or infinite entries"
        if problem:
            safe = tuple(max(0, int(d)) for d in desired)
            return Decision(safe, (1.0,) * len(safe), False, reasons.BAD_INPUT,
                            f"{self.name}: {problem}")
        action = self.action(vector, desired)
        deltas = self._spec.deltas(action)
        levels = self._spec.levels(action)
        replicas = tuple(max(0, r) for r in self._spec.wanted_replicas(action, desired))
        weights, all_zero = self._spec.weights(levels)
        top = self._spec.weight_levels - 1
        parts = [f"{pool} {d}->{r} ({delta:+d}), weight {level}/{top}" for pool, d, r, delta,
                 level in zip(self.bundle.action.pools, desired, replicas, deltas, levels,
                              strict=True)]
        note = "; every weight level 0: equal weights" if all_zero else ""
        return Decision(replicas, weights, True, reasons.POLICY,
                        f"{self.name}: {'; '.join(parts)}{note}")
