"""The bundle format: what a bundle directory holds, and the types that hold it in memory.

A bundle is a directory with two files:

``weights.npz``
    The actor MLP, ``numpy.savez`` format (no pickles): ``hidden_<i>_weight`` (``out × in``,
    as ``torch.nn.Linear.weight``) and ``hidden_<i>_bias`` (``out``) for every hidden layer
    ``i = 0, 1, …`` in order, then ``action_weight`` / ``action_bias`` (the action head, one
    logit per choice of every sub-action). A layer computes ``y = act(x @ W.T + b)``; the
    action head has no activation. The value network is not stored.
``bundle.json``
    ``format_version`` (:data:`FORMAT_VERSION`), ``created`` (ISO 8601, UTC), ``name``;
    ``observation`` (``size``, ``names``, ``units``, ``low``/``high``: the builder's bounds,
    ``seen_low``/``seen_high``: the range observed in training); ``normalization``
    (SB3 ``VecNormalize``: ``mean`` and ``var`` of ``obs_rms``, ``clip_obs``, ``epsilon``;
    or null); ``network`` (``layer_sizes`` from inputs to logits, ``activation``: ``tanh`` or
    ``relu``); ``action`` (``nvec``, ``pools``, ``replica_step``, ``weight_levels``: the
    ``MultiDiscrete`` layout of :mod:`rlscale.agents.action_space`); ``observation_config``
    (every :class:`~rlscale.metrics.observation_config.PoolInfo` field per pool, the SLO in seconds,
    the windows in seconds: the controller rebuilds the same
    :class:`~rlscale.metrics.observation.ObservationBuilder` from it); ``min_replicas``;
    ``interval_s`` (seconds between decisions); ``scenario`` (``name``, ``yaml`` text);
    ``train_config``; ``evaluation``; ``library_versions``; and ``checksum``:
    ``sha256:<hex>`` of the ``weights.npz`` bytes followed by the canonical JSON (sorted keys,
    no spaces, ASCII) of every other field of ``bundle.json``.

:func:`~rlscale.agents.bundle.io.load_bundle` verifies all of this and refuses a bad bundle with
a :class:`BundleError` that says what is wrong; :func:`~rlscale.agents.bundle.io.save_bundle`
writes an :class:`ActorNetwork` with its :class:`BundleSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.policy import PolicyContext
from rlscale.metrics.observation_config import ObservationConfig

FORMAT_VERSION = 1
"""The bundle format this rlscale writes."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""Bundle formats this rlscale reads."""
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "bundle.json"
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu")
"""Hidden-layer activations the numpy runtime implements."""

FloatArray = NDArray[np.float64]


class BundleError(ValueError):
    """A bundle cannot be written or loaded; the message says what is wrong and where."""


@dataclass(frozen=True, eq=False)
class Normalization:
    """SB3 ``VecNormalize`` observation statistics (``obs_rms``), in observation units.

    ``normalized = clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``.
    """

    mean: FloatArray
    var: FloatArray
    clip_obs: float
    epsilon: float

    def apply(self, vector: ArrayLike) -> FloatArray:
        """Normalize one observation (or a batch, one per row) exactly like VecNormalize."""
        values = np.asarray(vector, dtype=np.float64)
        scaled = (values - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs)


@dataclass(frozen=True, eq=False)
class Layer:
    """One dense layer: ``y = x @ weight.T + bias``; ``weight`` is ``out × in``."""

    weight: NDArray[np.floating[Any]]
    bias: NDArray[np.floating[Any]]


@dataclass(frozen=True, eq=False)
class ActorNetwork:
    """The policy network a bundle stores (what a save takes from the trained model).

    Attributes:
        weights: ``[W0, b0, W1, b1, …, W_action, b_action]`` (``W`` is ``out × in``) or a
            mapping with the names of :func:`weight_names`; stored as float32.
        activation: ``tanh`` or ``relu`` (hidden layers).
        normalization: VecNormalize statistics, or None if observations were not normalized.
    """

    weights: Sequence[ArrayLike] | Mapping[str, ArrayLike]
    activation: str
    normalization: Normalization | None = None


@dataclass(frozen=True, eq=False)
class BundleSpec:
    """Everything a bundle records besides the network (what a save takes from the run).

    Attributes:
        context: the observation config, minimum replicas and decision interval (s) the
            policy was trained for.
        action: the action layout; its pools must be the config's, in order.
        seen_low / seen_high: per-entry range observed in training (observation units).
        observation_names / observation_units: checked against the builder's (default: its).
        scenario_name / scenario_yaml: the training scenario and its YAML text.
        train_config / evaluation: JSON-able dicts (non-finite floats are stored as null).
        library_versions: name -> version (default: python, numpy, rlscale).
        name: the policy's name. created: ISO time (default: the time of saving, UTC).
    """

    context: PolicyContext
    action: ActionSpec
    seen_low: ArrayLike
    seen_high: ArrayLike
    observation_names: Sequence[str] | None = None
    observation_units: Sequence[str] | None = None
    scenario_name: str = ""
    scenario_yaml: str = ""
    train_config: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    library_versions: Mapping[str, str] | None = None
    name: str = "ppo"
    created: str | None = None


@dataclass(frozen=True, eq=False)
class Bundle:
    """A verified bundle (see the module docstring for the meaning of every field).

    Attributes:
        path: the bundle directory.
        hidden / head: the actor MLP's hidden layers (in order) and its action head.
        observation_low / observation_high: the builder's bounds per entry.
        seen_low / seen_high: the range each entry took in training.
        metadata: ``bundle.json`` as parsed.
    """

    path: Path
    format_version: int
    created: str
    name: str
    observation_names: tuple[str, ...]
    observation_units: tuple[str, ...]
    observation_low: NDArray[np.float32]
    observation_high: NDArray[np.float32]
    seen_low: NDArray[np.float32]
    seen_high: NDArray[np.float32]
    normalization: Normalization | None
    activation: str
    hidden: tuple[Layer, ...]
    head: Layer
    action: ActionSpec
    observation_config: ObservationConfig
    min_replicas: tuple[int, ...]
    interval_s: float
    scenario_name: str
    scenario_yaml: str
    train_config: dict[str, Any]
    evaluation: dict[str, Any]
    library_versions: dict[str, str]
    checksum: str
    metadata: dict[str, Any] = field(repr=False)

    @property
    def observation_size(self) -> int:
        """Entries of the observation vector."""
        return len(self.observation_names)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from the input to the logits."""
        return (self.observation_size, *(layer.bias.shape[0] for layer in self.hidden),
                self.head.bias.shape[0])

    def arrays(self) -> dict[str, NDArray[np.floating[Any]]]:
        """The arrays of ``weights.npz`` by name."""
        out: dict[str, NDArray[np.floating[Any]]] = {}
        for i, layer in enumerate(self.hidden):
            out[f"hidden_{i}_weight"], out[f"hidden_{i}_bias"] = layer.weight, layer.bias
        out["action_weight"], out["action_bias"] = self.head.weight, self.head.bias
        return out

    def policy_context(self) -> PolicyContext:
        """The pools, SLO, replica limits and interval the policy was trained for."""
        return PolicyContext(self.observation_config, self.min_replicas, self.interval_s)

    def network(self) -> ActorNetwork:
        """The stored network, as a save takes it."""
        return ActorNetwork(self.arrays(), self.activation, self.normalization)

    def spec(self) -> BundleSpec:
        """Everything else it records, as a save takes it (saving both again writes the same
        bundle)."""
        return BundleSpec(
            self.policy_context(), self.action, self.seen_low, self.seen_high,
            self.observation_names, self.observation_units, self.scenario_name,
            self.scenario_yaml, self.train_config, self.evaluation, self.library_versions,
            self.name, self.created)


def weight_names(layer_sizes: Sequence[int]) -> list[str]:
    """Array names in ``weights.npz`` for a network of ``layer_sizes`` (inputs to logits)."""
    names = [f"hidden_{i}_{part}" for i in range(len(layer_sizes) - 2)
             for part in ("weight", "bias")]
    return [*names, "action_weight", "action_bias"]
