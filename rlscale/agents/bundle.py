"""The policy bundle: a trained PPO policy as plain arrays and JSON, runnable with numpy alone.

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
    env's ``MultiDiscrete`` layout, see :mod:`rlscale.envs.actions`); ``observation_config``
    (every :class:`~rlscale.metrics.observation.PoolInfo` field per pool, the SLO in seconds,
    the windows in seconds: the controller rebuilds the same
    :class:`~rlscale.metrics.observation.ObservationBuilder` from it); ``min_replicas``;
    ``interval_s`` (seconds between decisions); ``scenario`` (``name``, ``yaml`` text);
    ``train_config``; ``evaluation``; ``library_versions``; and ``checksum``:
    ``sha256:<hex>`` of the ``weights.npz`` bytes followed by the canonical JSON (sorted keys,
    no spaces, ASCII) of every other field of ``bundle.json``.

:func:`load_bundle` verifies all of this and refuses a bad bundle with a :class:`BundleError`
that says what is wrong. Only :func:`export_sb3` needs torch, and imports it when called:
this module imports numpy, the standard library and :mod:`rlscale.metrics` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.policy import PolicyContext
from rlscale.metrics.observation import ObservationBuilder, ObservationConfig, PoolInfo

FORMAT_VERSION = 1
"""The bundle format this module writes."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""Bundle formats :func:`load_bundle` reads."""
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "bundle.json"
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu")
"""Hidden-layer activations the numpy runtime implements."""

FloatArray = NDArray[np.float64]


class BundleError(ValueError):
    """A bundle cannot be written or loaded; the message says what is wrong and where."""


# ---------------------------------------------------------------------------------- types
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


def weight_names(layer_sizes: Sequence[int]) -> list[str]:
    """Array names in ``weights.npz`` for a network of ``layer_sizes`` (inputs to logits)."""
    names = [f"hidden_{i}_{part}" for i in range(len(layer_sizes) - 2)
             for part in ("weight", "bias")]
    return [*names, "action_weight", "action_bias"]


# ---------------------------------------------------------------------------------- checksum
def canonical_json(metadata: Mapping[str, Any]) -> str:
    """``metadata`` without its ``checksum`` as canonical JSON (sorted keys, no spaces)."""
    rest = {key: value for key, value in metadata.items() if key != "checksum"}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def bundle_checksum(weights_bytes: bytes, metadata: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the ``weights.npz`` bytes and the canonical JSON of ``metadata``."""
    digest = hashlib.sha256(weights_bytes)
    digest.update(b"\n")
    digest.update(canonical_json(metadata).encode("ascii"))
    return f"sha256:{digest.hexdigest()}"


# ---------------------------------------------------------------------------------- saving
def save_bundle(path: str | os.PathLike[str], *,
                weights: Sequence[ArrayLike] | Mapping[str, ArrayLike], activation: str,
                observation_config: ObservationConfig, min_replicas: Sequence[int],
                interval_s: float, action_spec: ActionSpec,
                seen_low: ArrayLike, seen_high: ArrayLike,
                normalization: Normalization | None = None,
                observation_names: Sequence[str] | None = None,
                observation_units: Sequence[str] | None = None,
                scenario_name: str = "", scenario_yaml: str = "",
                train_config: Mapping[str, Any] | None = None,
                evaluation: Mapping[str, Any] | None = None,
                library_versions: Mapping[str, str] | None = None,
                name: str = "ppo", created: str | None = None) -> Path:
    """Write a bundle directory (created if missing; its two files are replaced).

    Args:
        path: the bundle directory.
        weights: ``[W0, b0, W1, b1, …, W_action, b_action]`` (``W`` is ``out × in``) or a
            mapping with the names of :func:`weight_names`; stored as float32.
        activation: ``tanh`` or ``relu`` (hidden layers).
        observation_config / min_replicas / interval_s (s): what the policy was trained for.
        action_spec: the action layout; its pools must be the config's, in order.
        seen_low / seen_high: per-entry range observed in training (observation units).
        normalization: VecNormalize statistics, or None if observations were not normalized.
        observation_names / observation_units: checked against the builder's (default: its).
        scenario_name / scenario_yaml: the training scenario and its YAML text.
        train_config / evaluation: JSON-able dicts (non-finite floats are stored as null).
        library_versions: name -> version (default: python, numpy, rlscale).
        name: the policy's name. created: ISO time (default: now, UTC).

    Raises:
        BundleError: the arguments do not make a bundle that :func:`load_bundle` accepts.
    """
    directory = Path(path)
    arrays = _named_arrays(weights)
    builder = ObservationBuilder(observation_config)
    names = tuple(observation_names) if observation_names is not None else builder.names
    units = tuple(observation_units) if observation_units is not None else builder.units
    layer_sizes = _layer_sizes(arrays)
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "name": name,
        "observation": {
            "size": len(names), "names": list(names), "units": list(units),
            "low": _float_list(builder.low), "high": _float_list(builder.high),
            "seen_low": _float_list(seen_low), "seen_high": _float_list(seen_high),
        },
        "normalization": None if normalization is None else {
            "kind": "VecNormalize", "mean": _float_list(normalization.mean),
            "var": _float_list(normalization.var), "clip_obs": float(normalization.clip_obs),
            "epsilon": float(normalization.epsilon)},
        "network": {"layer_sizes": layer_sizes, "activation": activation,
                    "layout": "y = act(x @ W.T + b); W is (out, in); no activation on the "
                              "action head"},
        "action": {"nvec": list(action_spec.nvec), "pools": list(action_spec.pools),
                   "replica_step": action_spec.replica_step,
                   "weight_levels": action_spec.weight_levels},
        "observation_config": _config_dict(observation_config),
        "min_replicas": [int(m) for m in min_replicas],
        "interval_s": float(interval_s),
        "scenario": {"name": scenario_name, "yaml": scenario_yaml},
        "train_config": _jsonable(dict(train_config or {}), "train_config"),
        "evaluation": _jsonable(dict(evaluation or {}), "evaluation"),
        "library_versions": dict(library_versions or _library_versions(())),
    }
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    weights_bytes = buffer.getvalue()
    try:
        _parse(metadata, arrays, directory)  # what is saved must load
        metadata["checksum"] = bundle_checksum(weights_bytes, metadata)
    except BundleError as err:
        raise BundleError(f"refusing to save bundle {directory}: {err}") from err
    except ValueError as err:  # non-finite floats in the metadata
        raise BundleError(f"refusing to save bundle {directory}: {err}") from err
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / WEIGHTS_FILE, weights_bytes)
    text = json.dumps(metadata, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    _write_atomic(directory / METADATA_FILE, text.encode("ascii"))
    return directory


def _named_arrays(weights: Sequence[ArrayLike] | Mapping[str, ArrayLike]
                  ) -> dict[str, NDArray[np.float32]]:
    if isinstance(weights, Mapping):
        items = [(str(key), value) for key, value in weights.items()]
    else:
        values = list(weights)
        if len(values) < 2 or len(values) % 2:
            raise BundleError(f"weights: expected [W0, b0, …, W_action, b_action] (an even "
                              f"number of arrays, at least 2), got {len(values)} arrays")
        items = list(zip(weight_names([0] * (len(values) // 2 + 1)), values, strict=True))
    return {key: np.asarray(value, dtype=np.float32) for key, value in items}


def _layer_sizes(arrays: Mapping[str, NDArray[np.float32]]) -> list[int]:
    """Widths from inputs to logits, read off the weight matrices (checked later in full)."""
    hidden = 0
    while f"hidden_{hidden}_weight" in arrays:
        hidden += 1
    stems = [*(f"hidden_{i}" for i in range(hidden)), "action"]
    matrices = [arrays.get(f"{stem}_weight") for stem in stems]
    shapes = [m.shape for m in matrices if m is not None and m.ndim == 2]
    if len(shapes) != len(stems):
        raise BundleError(f"weights: need 2-D arrays {[f'{s}_weight' for s in stems]} (out × in), "
                          f"got {sorted(arrays)}")
    return [int(shapes[0][1]), *(int(shape[0]) for shape in shapes)]


def _write_atomic(target: Path, data: bytes) -> None:
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def _float_list(values: ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _config_dict(config: ObservationConfig) -> dict[str, Any]:
    return {**asdict(config), "pools": [asdict(pool) for pool in config.pools]}


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with dataclasses, numpy scalars/arrays, tuples and paths made JSON types;
    non-finite floats become None."""
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value), where)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise BundleError(f"{where}: a {type(value).__name__} cannot be stored in bundle.json")


def _library_versions(extra: Sequence[str]) -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("rlscale", *extra):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


# ---------------------------------------------------------------------------------- export
def export_sb3(model: Any, vec_normalize: Any | None, path: str | os.PathLike[str], *,
               observation_config: ObservationConfig, min_replicas: Sequence[int],
               interval_s: float, action_spec: ActionSpec,
               observation_names: Sequence[str], observation_units: Sequence[str],
               seen_low: ArrayLike, seen_high: ArrayLike, scenario_name: str,
               scenario_yaml: str, train_config: Mapping[str, Any],
               evaluation: Mapping[str, Any] | None = None, name: str = "ppo") -> Path:
    """Export a stable-baselines3 ``PPO`` / sb3-contrib ``MaskablePPO`` ``MlpPolicy`` actor.

    Takes ``model.policy.mlp_extractor.policy_net`` (Linear + Tanh/ReLU layers) and
    ``model.policy.action_net``; the observation must be a flat ``Box`` read through SB3's
    ``FlattenExtractor`` (an identity for 1-D observations). ``vec_normalize``: the
    ``VecNormalize`` the model was trained in (its ``obs_rms``, ``clip_obs``, ``epsilon``),
    or None. Other arguments as :func:`save_bundle`. Imports torch (only here).

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
    if nvec != list(action_spec.nvec):
        raise BundleError(f"export_sb3: the model's action space {model.action_space} does not "
                          f"match the action spec's nvec {list(action_spec.nvec)}")
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
    return save_bundle(
        path, weights=weights, activation=activation or "tanh",
        observation_config=observation_config, min_replicas=min_replicas,
        interval_s=interval_s, action_spec=action_spec, seen_low=seen_low, seen_high=seen_high,
        normalization=_vec_normalization(vec_normalize), observation_names=observation_names,
        observation_units=observation_units, scenario_name=scenario_name,
        scenario_yaml=scenario_yaml, train_config=train_config, evaluation=evaluation,
        library_versions=_library_versions(
            ("torch", "stable-baselines3", "sb3-contrib", "gymnasium")), name=name)


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


# ---------------------------------------------------------------------------------- loading
def load_bundle(path: str | os.PathLike[str], *, expect_pools: Sequence[str] | None = None,
                expect_observation_size: int | None = None) -> Bundle:
    """Read and verify a bundle directory.

    Args:
        path: the bundle directory.
        expect_pools: pool names the caller runs (in order); the bundle's must be the same.
        expect_observation_size: entries of the caller's observation vector.

    Raises:
        BundleError: (and nothing else for bad input) missing directory or file, unreadable
            ``weights.npz``, invalid JSON, unsupported ``format_version``, checksum mismatch,
            malformed fields, layer shapes that do not fit ``network``/observation/``nvec``,
            NaN or infinite weights, other pools or observation size than expected.
    """
    directory = Path(path)
    try:
        bundle = _load(directory)
    except BundleError:
        raise
    except Exception as err:  # whatever slipped past the checks is still a bad bundle
        raise BundleError(f"bundle {directory}: cannot be loaded: "
                          f"{type(err).__name__}: {err}") from err
    if expect_pools is not None and tuple(expect_pools) != bundle.action.pools:
        raise BundleError(f"bundle {directory}: its pools {list(bundle.action.pools)} do not "
                          f"match the expected pools {list(expect_pools)} (same names in the "
                          f"same order are needed)")
    if expect_observation_size is not None and expect_observation_size != bundle.observation_size:
        raise BundleError(f"bundle {directory}: its observation has {bundle.observation_size} "
                          f"entries, but {expect_observation_size} are expected")
    return bundle


def _load(directory: Path) -> Bundle:
    if not directory.exists():
        raise BundleError(f"bundle directory {directory} does not exist")
    if not directory.is_dir():
        raise BundleError(f"bundle {directory} is not a directory (a bundle is a directory "
                          f"holding {WEIGHTS_FILE} and {METADATA_FILE})")
    for name in (METADATA_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise BundleError(f"bundle {directory}: missing {name}")
    try:
        metadata_bytes = (directory / METADATA_FILE).read_bytes()
        weights_bytes = (directory / WEIGHTS_FILE).read_bytes()
    except OSError as err:
        raise BundleError(f"bundle {directory}: cannot read its files: {err}") from err
    metadata = _parse_json(metadata_bytes, directory)
    version = metadata.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise BundleError(f"bundle {directory}: format_version {version!r} is not supported; "
                          f"this rlscale reads format_version "
                          f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    recorded = metadata.get("checksum")
    if not isinstance(recorded, str) or not recorded.startswith("sha256:"):
        raise BundleError(f"bundle {directory}: {METADATA_FILE} has no checksum "
                          f"('sha256:<hex>'), got {recorded!r}")
    computed = bundle_checksum(weights_bytes, metadata)
    arrays, problem = _read_npz(weights_bytes)
    if problem:
        also = "" if computed == recorded else "; the checksum does not match either"
        raise BundleError(f"bundle {directory}: {WEIGHTS_FILE} is truncated or corrupt "
                          f"(numpy cannot read it: {problem}){also}")
    if computed != recorded:
        raise BundleError(f"bundle {directory}: checksum mismatch: {METADATA_FILE} records "
                          f"{recorded}, but {WEIGHTS_FILE} and {METADATA_FILE} hash to "
                          f"{computed}; the bundle was changed or damaged after export")
    return _parse(metadata, arrays, directory)


def _parse_json(data: bytes, directory: Path) -> dict[str, Any]:
    def reject(constant: str) -> Any:
        raise ValueError(f"{constant} is not a JSON number")

    try:
        parsed = json.loads(data.decode("utf-8"), parse_constant=reject)
    except UnicodeDecodeError as err:
        raise BundleError(f"bundle {directory}: {METADATA_FILE} is not UTF-8 text: {err}") from err
    except json.JSONDecodeError as err:
        raise BundleError(f"bundle {directory}: {METADATA_FILE} is not valid JSON: "
                          f"{err.msg} at line {err.lineno} column {err.colno}") from err
    except ValueError as err:
        raise BundleError(f"bundle {directory}: {METADATA_FILE} is not valid JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise BundleError(f"bundle {directory}: {METADATA_FILE} must hold a JSON object, got "
                          f"{type(parsed).__name__}")
    return parsed


def _read_npz(data: bytes) -> tuple[dict[str, NDArray[Any]], str]:
    """The arrays of an ``.npz`` file and "", or {} and what went wrong."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {}, "it holds a single .npy array, not an .npz archive"
        with loaded as npz:
            return {key: np.asarray(npz[key]) for key in npz.files}, ""
    except Exception as err:  # zipfile, numpy format and OS errors alike
        return {}, f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------- validation
def _parse(meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]],
           directory: Path) -> Bundle:
    """Check every field of ``bundle.json`` and every array; build the :class:`Bundle`."""
    obs = _section(meta, "observation")
    size = _int(obs, "size", "observation", low=1)
    names = _strings(obs, "names", "observation", size)
    units = _strings(obs, "units", "observation", size)
    bounds = {key: _floats(obs, key, "observation", size).astype(np.float32)
              for key in ("low", "high", "seen_low", "seen_high")}
    normalization = _normalization(meta, size)
    action = _action(meta)
    config = _observation_config(meta, action, names, bounds["low"], bounds["high"])
    count = len(action.pools)
    min_replicas = tuple(_ints(meta, "min_replicas", "", count))
    for pool, low in zip(config.pools, min_replicas, strict=True):
        if not 0 <= low <= pool.max_replicas:
            raise BundleError(f"min_replicas of pool {pool.name!r} is {low}; it must lie in "
                              f"[0, max_replicas={pool.max_replicas}]")
    interval_s = _float(meta, "interval_s", "")
    if interval_s <= 0:
        raise BundleError(f"interval_s must be > 0 seconds, got {interval_s}")
    network = _section(meta, "network")
    activation = _str(network, "activation", "network")
    if activation not in ACTIVATIONS:
        raise BundleError(f"network.activation {activation!r} is not supported; use one of "
                          f"{list(ACTIVATIONS)}")
    sizes = _ints(network, "layer_sizes", "network", None)
    hidden, head = _layers(arrays, sizes, size, action)
    scenario = _section(meta, "scenario")
    versions = _section(meta, "library_versions")
    return Bundle(
        path=directory, format_version=_int(meta, "format_version", ""),
        created=_str(meta, "created", ""), name=str(meta.get("name") or "ppo"),
        observation_names=names, observation_units=units,
        observation_low=bounds["low"], observation_high=bounds["high"],
        seen_low=bounds["seen_low"], seen_high=bounds["seen_high"],
        normalization=normalization, activation=activation, hidden=hidden, head=head,
        action=action, observation_config=config, min_replicas=min_replicas,
        interval_s=interval_s, scenario_name=_str(scenario, "name", "scenario"),
        scenario_yaml=_str(scenario, "yaml", "scenario"),
        train_config=dict(_section(meta, "train_config")),
        evaluation=dict(_section(meta, "evaluation")),
        library_versions={str(k): str(v) for k, v in versions.items()},
        checksum=str(meta.get("checksum", "")), metadata=dict(meta))


def _normalization(meta: Mapping[str, Any], size: int) -> Normalization | None:
    if "normalization" not in meta:
        raise BundleError("bundle.json has no 'normalization' (an object or null)")
    if meta["normalization"] is None:
        return None
    norm = _section(meta, "normalization")
    mean = _floats(norm, "mean", "normalization", size)
    var = _floats(norm, "var", "normalization", size)
    clip_obs = _float(norm, "clip_obs", "normalization")
    epsilon = _float(norm, "epsilon", "normalization")
    if clip_obs <= 0 or epsilon < 0 or np.any(var < 0) or np.any(var + epsilon <= 0):
        raise BundleError(f"normalization: need clip_obs > 0, epsilon >= 0, var >= 0 and "
                          f"var + epsilon > 0; got clip_obs {clip_obs}, epsilon {epsilon}, "
                          f"min var {float(var.min())}")
    return Normalization(mean, var, clip_obs, epsilon)


def _action(meta: Mapping[str, Any]) -> ActionSpec:
    section = _section(meta, "action")
    pools = _strings(section, "pools", "action", None)
    try:
        spec = ActionSpec(pools, _int(section, "replica_step", "action", low=0),
                          _int(section, "weight_levels", "action", low=2))
    except ValueError as err:
        raise BundleError(str(err)) from err
    nvec = _ints(section, "nvec", "action", None)
    if tuple(nvec) != spec.nvec:
        raise BundleError(f"action.nvec {nvec} does not fit {len(pools)} pools with "
                          f"replica_step {spec.replica_step} and weight_levels "
                          f"{spec.weight_levels} (that is {list(spec.nvec)})")
    return spec


def _observation_config(meta: Mapping[str, Any], action: ActionSpec, names: tuple[str, ...],
                        low: NDArray[np.float32], high: NDArray[np.float32]
                        ) -> ObservationConfig:
    section = dict(_section(meta, "observation_config"))
    pools = section.pop("pools", None)
    if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
        raise BundleError("observation_config.pools must be a list of objects")
    try:
        config = ObservationConfig(tuple(PoolInfo(**p) for p in pools), **section)
    except (TypeError, ValueError) as err:
        raise BundleError(f"observation_config is not a valid ObservationConfig: {err}") from err
    pool_names = tuple(p.name for p in config.pools)
    if pool_names != action.pools:
        raise BundleError(f"observation_config pools {list(pool_names)} differ from "
                          f"action.pools {list(action.pools)}")
    builder = ObservationBuilder(config)
    if builder.size != len(names):
        raise BundleError(f"observation.size is {len(names)}, but this rlscale's observation "
                          f"builder makes {builder.size} entries for these pools")
    for i, (ours, theirs) in enumerate(zip(builder.names, names, strict=True)):
        if ours != theirs:
            raise BundleError(f"observation entry {i} is {theirs!r} in the bundle but {ours!r} "
                              f"in this rlscale's observation builder: the bundle was trained "
                              f"on another observation layout")
    if not (np.array_equal(builder.low, low) and np.array_equal(builder.high, high)):
        raise BundleError("observation.low/high differ from this rlscale's observation "
                          "builder's bounds: the bundle was trained on other ranges")
    return config


def _layers(arrays: Mapping[str, NDArray[Any]], sizes: list[int], size: int,
            action: ActionSpec) -> tuple[tuple[Layer, ...], Layer]:
    logits = sum(action.nvec)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise BundleError(f"network.layer_sizes {sizes}: need at least inputs and logits, "
                          f"all >= 1")
    if sizes[0] != size:
        raise BundleError(f"network.layer_sizes {sizes} starts with {sizes[0]} inputs, but "
                          f"the observation has {size} entries")
    if sizes[-1] != logits:
        raise BundleError(f"network.layer_sizes {sizes} ends with {sizes[-1]} logits, but "
                          f"action.nvec {list(action.nvec)} needs {logits}")
    expected = weight_names(sizes)
    missing = [key for key in expected if key not in arrays]
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise BundleError(f"{WEIGHTS_FILE} holds {sorted(arrays)}, but network.layer_sizes "
                          f"{sizes} needs {expected} (missing {missing}, unexpected {extra})")
    layers = []
    for i in range(len(sizes) - 1):
        stem = f"hidden_{i}" if i < len(sizes) - 2 else "action"
        shapes = {"weight": (sizes[i + 1], sizes[i]), "bias": (sizes[i + 1],)}
        parts = {part: _check_array(f"{stem}_{part}", arrays[f"{stem}_{part}"], shape, sizes)
                 for part, shape in shapes.items()}
        layers.append(Layer(parts["weight"], parts["bias"]))
    return tuple(layers[:-1]), layers[-1]


def _check_array(key: str, array: NDArray[Any], shape: tuple[int, ...],
                 sizes: list[int]) -> NDArray[np.floating[Any]]:
    if not np.issubdtype(array.dtype, np.floating):
        raise BundleError(f"{WEIGHTS_FILE}: {key} has dtype {array.dtype}; float32 or float64 "
                          f"expected")
    if array.shape != shape:
        raise BundleError(f"{WEIGHTS_FILE}: {key} has shape {array.shape}, but "
                          f"network.layer_sizes {sizes} needs {shape} ((out, in) for weights)")
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise BundleError(f"{WEIGHTS_FILE}: {key} has {int(bad.sum())} NaN or infinite "
                          f"value(s), the first at index {list(where)}")
    return array


# ---------------------------------------------------------------------------------- field readers
def _get(section: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in section:
        raise BundleError(f"bundle.json has no '{_path(where, key)}'")
    return section[key]


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _section(section: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = _get(section, key, "")
    if not isinstance(value, dict):
        raise BundleError(f"bundle.json: '{key}' must be an object, got {type(value).__name__}")
    return value


def _str(section: Mapping[str, Any], key: str, where: str) -> str:
    value = _get(section, key, where)
    if not isinstance(value, str):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must be a string, got {value!r}")
    return value


def _int(section: Mapping[str, Any], key: str, where: str, low: int | None = None) -> int:
    value = _get(section, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None
                                                                 and value < low):
        rule = "an integer" if low is None else f"an integer >= {low}"
        raise BundleError(f"bundle.json: '{_path(where, key)}' must be {rule}, got {value!r}")
    return value


def _float(section: Mapping[str, Any], key: str, where: str) -> float:
    value = _get(section, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must be a finite number, "
                          f"got {value!r}")
    return float(value)


def _list(section: Mapping[str, Any], key: str, where: str, length: int | None) -> list[Any]:
    value = _get(section, key, where)
    if not isinstance(value, list) or (length is not None and len(value) != length):
        wanted = "a list" if length is None else f"a list of {length} values"
        got = f"{len(value)} values" if isinstance(value, list) else repr(value)[:60]
        raise BundleError(f"bundle.json: '{_path(where, key)}' must be {wanted}, got {got}")
    return value


def _strings(section: Mapping[str, Any], key: str, where: str,
             length: int | None) -> tuple[str, ...]:
    values = _list(section, key, where, length)
    if not all(isinstance(v, str) for v in values):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must hold strings only")
    return tuple(values)


def _ints(section: Mapping[str, Any], key: str, where: str, length: int | None) -> list[int]:
    values = _list(section, key, where, length)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must hold integers only")
    return values


def _floats(section: Mapping[str, Any], key: str, where: str, length: int) -> FloatArray:
    values = _list(section, key, where, length)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must hold numbers only")
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise BundleError(f"bundle.json: '{_path(where, key)}' must hold finite numbers")
    return array


def attach_evaluation(path: str | os.PathLike[str], evaluation: Mapping[str, Any]) -> Path:
    """Rewrite the bundle at ``path`` with ``evaluation`` recorded (a new checksum); everything
    else is kept as it was. Training calls it once the held-out evaluation is done."""
    bundle = load_bundle(path)
    return save_bundle(
        path, weights=bundle.arrays(), activation=bundle.activation,
        observation_config=bundle.observation_config, min_replicas=bundle.min_replicas,
        interval_s=bundle.interval_s, action_spec=bundle.action, seen_low=bundle.seen_low,
        seen_high=bundle.seen_high, normalization=bundle.normalization,
        observation_names=bundle.observation_names, observation_units=bundle.observation_units,
        scenario_name=bundle.scenario_name, scenario_yaml=bundle.scenario_yaml,
        train_config=bundle.train_config, evaluation=evaluation,
        library_versions=bundle.library_versions, name=bundle.name, created=bundle.created)
