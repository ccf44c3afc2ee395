"""Saving and loading bundle directories: checksum, atomic writes, verified loads.

:func:`save_bundle` writes what :func:`load_bundle` accepts (it checks by parsing before
writing), each file replaced atomically; :func:`load_bundle` reads, verifies the checksum and
every field (:mod:`~rlscale.agents.bundle.validation`) and raises only
:class:`~rlscale.agents.bundle.format.BundleError` for bad input. The format is described in
:mod:`rlscale.agents.bundle.format`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass, replace
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlscale.agents.bundle.format import (
    FORMAT_VERSION,
    METADATA_FILE,
    SUPPORTED_VERSIONS,
    WEIGHTS_FILE,
    ActorNetwork,
    Bundle,
    BundleError,
    BundleSpec,
    weight_names,
)
from rlscale.agents.bundle.validation import parse_bundle
from rlscale.metrics.observation import ObservationBuilder
from rlscale.metrics.observation_config import ObservationConfig


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
def save_bundle(path: str | os.PathLike[str], network: ActorNetwork, spec: BundleSpec) -> Path:
    """Write ``network`` and ``spec`` as a bundle directory at ``path`` (created if missing;
    its two files are replaced).

    Raises:
        BundleError: they do not make a bundle that :func:`load_bundle` accepts.
    """
    directory = Path(path)
    arrays = _named_arrays(network.weights)
    context = spec.context
    builder = ObservationBuilder(context.observation)
    names = tuple(spec.observation_names) if spec.observation_names is not None else (
        builder.names)
    units = tuple(spec.observation_units) if spec.observation_units is not None else (
        builder.units)
    normalization = network.normalization
    action = spec.action
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": spec.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "name": spec.name,
        "observation": {
            "size": len(names), "names": list(names), "units": list(units),
            "low": _float_list(builder.low), "high": _float_list(builder.high),
            "seen_low": _float_list(spec.seen_low), "seen_high": _float_list(spec.seen_high),
        },
        "normalization": None if normalization is None else {
            "kind": "VecNormalize", "mean": _float_list(normalization.mean),
            "var": _float_list(normalization.var), "clip_obs": float(normalization.clip_obs),
            "epsilon": float(normalization.epsilon)},
        "network": {"layer_sizes": _layer_sizes(arrays), "activation": network.activation,
                    "layout": "y = act(x @ W.T + b); W is (out, in); no activation on the "
                              "action head"},
        "action": {"nvec": list(action.nvec), "pools": list(action.pools),
                   "replica_step": action.replica_step,
                   "weight_levels": action.weight_levels},
        "observation_config": _config_dict(context.observation),
        "min_replicas": [int(m) for m in context.min_replicas],
        "interval_s": float(context.interval_s),
        "scenario": {"name": spec.scenario_name, "yaml": spec.scenario_yaml},
        "train_config": _jsonable(dict(spec.train_config or {}), "train_config"),
        "evaluation": _jsonable(dict(spec.evaluation or {}), "evaluation"),
        "library_versions": dict(spec.library_versions or library_versions(())),
    }
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    weights_bytes = buffer.getvalue()
    try:
        parse_bundle(metadata, arrays, directory)  # what is saved must load
        metadata["checksum"] = bundle_checksum(weights_bytes, metadata)
    except ValueError as err:  # a BundleError, or non-finite floats in the metadata
        raise BundleError(f"refusing to save bundle {directory}: {err}") from err
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / WEIGHTS_FILE, weights_bytes)
    text = json.dumps(metadata, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    _write_atomic(directory / METADATA_FILE, text.encode("ascii"))
    return directory


def attach_evaluation(path: str | os.PathLike[str], evaluation: Mapping[str, Any]) -> Path:
    """Rewrite the bundle at ``path`` with ``evaluation`` recorded (a new checksum); everything
    else is kept as it was. Training calls it once the held-out evaluation is done."""
    bundle = load_bundle(path)
    return save_bundle(path, bundle.network(), replace(bundle.spec(), evaluation=evaluation))


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


def library_versions(extra: Sequence[str]) -> dict[str, str]:
    """Versions of python, numpy, rlscale and the ``extra`` packages ("not installed" if
    absent)."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("rlscale", *extra):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


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
    return parse_bundle(metadata, arrays, directory)


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
