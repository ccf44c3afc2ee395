"""Every check of a bundle's ``bundle.json`` fields and ``weights.npz`` arrays.

Fields are read with :class:`rlscale.configschema.Section` (the readers every rlscale config
uses); a wrong field becomes a :class:`~rlscale.agents.bundle.format.BundleError` that names
its path (``bundle.json: observation.size: expected an integer in [1, inf], got 0``).
Consistency checks (layer shapes against ``network.layer_sizes``, the observation against this
rlscale's builder, ``nvec`` against the pools) say what the bundle has and what was needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rlscale.agents.action_space import ActionSpec
from rlscale.agents.bundle.format import (
    ACTIVATIONS,
    METADATA_FILE,
    WEIGHTS_FILE,
    Bundle,
    BundleError,
    Layer,
    Normalization,
    weight_names,
)
from rlscale.configschema import ConfigError, Section
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig, PoolInfo


def parse_bundle(meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]],
                 directory: Path) -> Bundle:
    """Check every field of ``bundle.json`` (``meta``) and every array; build the
    :class:`~rlscale.agents.bundle.format.Bundle`.

    Raises:
        BundleError: what is wrong, with the field's path.
    """
    try:
        return _parse(Section(meta, ""), arrays, directory)
    except ConfigError as err:
        raise BundleError(f"{METADATA_FILE}: {err}") from err


def _parse(root: Section, arrays: Mapping[str, NDArray[Any]], directory: Path) -> Bundle:
    obs = root.section("observation", required=True)
    size = obs.integer("size", min_value=1)
    names = obs.strings("names", size)
    units = obs.strings("units", size)
    bounds = {key: np.asarray(obs.numbers(key, size), dtype=np.float64).astype(np.float32)
              for key in ("low", "high", "seen_low", "seen_high")}
    normalization = _normalization(root, size)
    action = _action(root.section("action", required=True))
    config = _observation_config(root.section("observation_config", required=True), action,
                                 names, bounds["low"], bounds["high"])
    min_replicas = tuple(root.integers("min_replicas", action.count))
    for pool, low in zip(config.pools, min_replicas, strict=True):
        if not 0 <= low <= pool.max_replicas:
            raise BundleError(f"min_replicas of pool {pool.name!r} is {low}; it must lie in "
                              f"[0, max_replicas={pool.max_replicas}]")
    interval_s = root.number("interval_s")
    if interval_s <= 0:
        raise BundleError(f"interval_s must be > 0 seconds, got {interval_s}")
    network = root.section("network", required=True)
    activation = network.string("activation", allow_empty=True)
    if activation not in ACTIVATIONS:
        raise BundleError(f"network.activation {activation!r} is not supported; use one of "
                          f"{list(ACTIVATIONS)}")
    sizes = network.integers("layer_sizes")
    hidden, head = _layers(arrays, sizes, size, action)
    scenario = root.section("scenario", required=True)
    versions = root.section("library_versions", required=True)
    return Bundle(
        path=directory, format_version=root.integer("format_version"),
        created=root.string("created", allow_empty=True), name=str(root.raw("name") or "ppo"),
        observation_names=names, observation_units=units,
        observation_low=bounds["low"], observation_high=bounds["high"],
        seen_low=bounds["seen_low"], seen_high=bounds["seen_high"],
        normalization=normalization, activation=activation, hidden=hidden, head=head,
        action=action, observation_config=config, min_replicas=min_replicas,
        interval_s=interval_s, scenario_name=scenario.string("name", allow_empty=True),
        scenario_yaml=scenario.string("yaml", allow_empty=True),
        train_config=root.section("train_config", required=True).data,
        evaluation=root.section("evaluation", required=True).data,
        library_versions={str(k): str(v) for k, v in versions.data.items()},
        checksum=str(root.raw("checksum", "")), metadata=dict(root.data))


def _normalization(root: Section, size: int) -> Normalization | None:
    if "normalization" not in root.data:
        raise BundleError(f"{METADATA_FILE} has no 'normalization' (an object or null)")
    if root.data["normalization"] is None:
        return None
    norm = root.section("normalization")
    mean = np.asarray(norm.numbers("mean", size), dtype=np.float64)
    var = np.asarray(norm.numbers("var", size), dtype=np.float64)
    clip_obs = norm.number("clip_obs")
    epsilon = norm.number("epsilon")
    if clip_obs <= 0 or epsilon < 0 or np.any(var < 0) or np.any(var + epsilon <= 0):
        raise BundleError(f"normalization: need clip_obs > 0, epsilon >= 0, var >= 0 and "
                          f"var + epsilon > 0; got clip_obs {clip_obs}, epsilon {epsilon}, "
                          f"min var {float(var.min())}")
    return Normalization(mean, var, clip_obs, epsilon)


def _action(section: Section) -> ActionSpec:
    pools = section.strings("pools")
    step = section.integer("replica_step", min_value=0)
    levels = section.integer("weight_levels", min_value=2)
    try:
        spec = ActionSpec(pools, step, levels)
    except ValueError as err:
        raise BundleError(str(err)) from err
    nvec = section.integers("nvec")
    if tuple(nvec) != spec.nvec:
        raise BundleError(f"action.nvec {nvec} does not fit {len(pools)} pools with "
                          f"replica_step {spec.replica_step} and weight_levels "
                          f"{spec.weight_levels} (that is {list(spec.nvec)})")
    return spec


def _observation_config(section: Section, action: ActionSpec, names: tuple[str, ...],
                        low: NDArray[np.float32], high: NDArray[np.float32]
                        ) -> ObservationConfig:
    fields = dict(section.data)
    pools = fields.pop("pools", None)
    if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
        raise BundleError("observation_config.pools must be a list of objects")
    try:
        config = ObservationConfig(tuple(PoolInfo(**p) for p in pools), **fields)
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
