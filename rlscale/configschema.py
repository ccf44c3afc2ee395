"""Reading nested YAML mappings with errors that name the field and say what would be right.

Shared by every config of rlscale (scenarios, training, the controller) and dependent on nothing
else in the package, so the in-cluster controller can use it without importing the simulator.
Read values with the typed getters of :class:`Section` (a missing ``default`` makes a field
required) and call :meth:`Section.finish` at the end, so unknown keys (typos) are refused
instead of ignored::

    scenario.pools[1].max_replicas: expected an integer in [0, 10000], got -2
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_MISSING: Any = object()

MAX_REPLICAS = 10_000
"""Upper bound on a pool's replicas anywhere (scenario or controller): more is a typo."""
MAX_TOKENS_PER_S_PER_GPU = 1e6
"""Tokens per second one GPU cannot exceed (a generous physical bound: an H100 prefills
about 1e4-1e5 tokens/s); the controller leaves out a pod whose counters say more."""
MAX_SPAN_S = 366 * 86_400.0
"""Upper bound on a duration or a trace's time span (seconds; a year): more never finishes."""
MAX_RATE_PER_S = 10_000.0
"""Upper bound on a configured request rate (requests per second)."""


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range; the message
    starts with the field's path."""


class Section:
    """One mapping of the config, remembering where it is (``path``, e.g. ``pools[0]``)."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got "
                              f"{type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self._used: set[str] = set()

    def where(self, key: str) -> str:
        """The full path of ``key`` in this section."""
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (and not null)."""
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as parsed from YAML (marked as read)."""
        self._used.add(key)
        value = self.data.get(key)
        return default if value is None else value

    def section(self, key: str, *, required: bool = False) -> Section:
        """A nested mapping (empty when absent, unless ``required``)."""
        self._required(key, _MISSING if required else None)
        return Section(self.raw(key), self.where(key))

    def sections(self, key: str) -> list[Section]:
        """A list of mappings (empty when absent)."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.where(key)}: expected a list, got {type(value).__name__}")
        return [Section(item, f"{self.where(key)}[{i}]") for i, item in enumerate(value)]

    def mapping(self, key: str) -> dict[str, Any]:
        """A mapping with string keys, as plain data (empty when absent)."""
        value = self.raw(key, {})
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{self.where(key)}: expected a mapping with string keys, got "
                              f"{value!r}")
        return dict(value)

    def number(self, key: str, default: float = _MISSING, *,
               min_value: float | None = None, strict_min: bool = False,
               max_value: float | None = None) -> float:
        """A finite real number, optionally bounded; without ``default`` it is required."""
        value = self._required(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise ConfigError(f"{self.where(key)}: expected a number, got {value!r}")
        value = float(value)
        low_ok = min_value is None or (value > min_value if strict_min else value >= min_value)
        if not low_ok or (max_value is not None and value > max_value):
            low = "" if min_value is None else f"{'>' if strict_min else '>='} {min_value:g}"
            high = "" if max_value is None else f"<= {max_value:g}"
            bounds = " and ".join(b for b in (low, high) if b)
            raise ConfigError(f"{self.where(key)}: expected a number {bounds}, got {value:g}")
        return value

    def integer(self, key: str, default: int = _MISSING, *,
                min_value: int | None = None, max_value: int | None = None) -> int:
        """An integer, optionally bounded; without ``default`` it is required."""
        value = self._required(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.where(key)}: expected an integer, got {value!r}")
        if (min_value is not None and value < min_value) or (
                max_value is not None and value > max_value):
            low = "-inf" if min_value is None else min_value
            high = "inf" if max_value is None else max_value
            raise ConfigError(f"{self.where(key)}: expected an integer in [{low}, {high}], "
                              f"got {value}")
        return value

    def string(self, key: str, default: str = _MISSING,
               choices: tuple[str, ...] | None = None, *, allow_empty: bool = False) -> str:
        """A non-empty string (or any string with ``allow_empty``), optionally one of
        ``choices``."""
        value = self._required(key, default)
        if not isinstance(value, str) or (not value and key in self.data and not allow_empty):
            kind = "a string" if allow_empty else "a non-empty string"
            raise ConfigError(f"{self.where(key)}: expected {kind}, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.where(key)}: expected one of {list(choices)}, got "
                              f"{value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        """A non-empty string, or None when absent."""
        return self.string(key) if self.has(key) else self.raw(key)

    def values(self, key: str, length: int | None = None) -> list[Any]:
        """A required list, of exactly ``length`` items if given."""
        value = self._required(key, _MISSING)
        if not isinstance(value, list) or (length is not None and len(value) != length):
            wanted = "a list" if length is None else f"a list of {length} values"
            got = f"{len(value)} values" if isinstance(value, list) else repr(value)[:60]
            raise ConfigError(f"{self.where(key)}: expected {wanted}, got {got}")
        return value

    def strings(self, key: str, length: int | None = None) -> tuple[str, ...]:
        """A required list of strings (:meth:`values`)."""
        values = self.values(key, length)
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{self.where(key)}: expected strings only")
        return tuple(values)

    def integers(self, key: str, length: int | None = None) -> list[int]:
        """A required list of integers (:meth:`values`)."""
        values = self.values(key, length)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{self.where(key)}: expected integers only")
        return values

    def numbers(self, key: str, length: int | None = None) -> list[float]:
        """A required list of finite real numbers (:meth:`values`)."""
        values = self.values(key, length)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values):
            raise ConfigError(f"{self.where(key)}: expected finite numbers only")
        return [float(v) for v in values]

    def boolean(self, key: str, default: bool = _MISSING) -> bool:
        """True or false."""
        value = self._required(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where(key)}: expected true or false, got {value!r}")
        return value

    def finish(self) -> None:
        """Raise if the mapping has keys nobody read (a typo, or a field of another mode)."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise ConfigError(f"{self.path or 'config'}: unknown field(s) {unknown}; known "
                              f"here: {sorted(self._used)}")

    def _required(self, key: str, default: Any) -> Any:
        self._used.add(key)
        value = self.data.get(key)
        if value is not None:
            return value
        if default is _MISSING:
            raise ConfigError(f"{self.where(key)}: required field is missing")
        return default
