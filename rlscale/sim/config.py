"""Reading nested YAML mappings with errors that name the field and say what would be right."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


class Section:
    """A view of one mapping in a config, remembering its path (``scenario.pools[1].engine``).

    Read values with the typed getters; call :meth:`finish` at the end so that unknown keys
    (typos) are reported instead of silently ignored.
    """

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self._used: set[str] = set()

    def has(self, key: str) -> bool:
        """Whether ``key`` is present."""
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        """The value as parsed from YAML, marked as used."""
        self._used.add(key)
        return self.data.get(key, default)

    def section(self, key: str) -> Section:
        """A nested mapping (empty if absent)."""
        return Section(self.raw(key), f"{self.path}.{key}")

    def sections(self, key: str) -> list[Section]:
        """A list of mappings."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.path}.{key}: expected a list, got {type(value).__name__}")
        return [Section(item, f"{self.path}.{key}[{i}]") for i, item in enumerate(value)]

    def number(self, key: str, default: float | None = None, *, min_value: float | None = None,
               max_value: float | None = None, strict_min: bool = False) -> float:
        """A real number, optionally bounded; ``default`` None makes it required."""
        value = self._required(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.path}.{key}: expected a number, got {value!r}")
        value = float(value)
        low_ok = min_value is None or (value > min_value if strict_min else value >= min_value)
        if not low_ok or (max_value is not None and value > max_value):
            low = "" if min_value is None else f"{'>' if strict_min else '>='} {min_value:g}"
            high = "" if max_value is None else f"<= {max_value:g}"
            bounds = " and ".join(b for b in (low, high) if b)
            raise ConfigError(f"{self.path}.{key}: expected a number {bounds}, got {value:g}")
        return value

    def integer(self, key: str, default: int | None = None, *, min_value: int | None = None,
                max_value: int | None = None) -> int:
        """An integer, optionally bounded; ``default`` None makes it required."""
        value = self._required(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.path}.{key}: expected an integer, got {value!r}")
        if (min_value is not None and value < min_value) or (
                max_value is not None and value > max_value):
            raise ConfigError(
                f"{self.path}.{key}: expected an integer in "
                f"[{min_value if min_value is not None else '-inf'}, "
                f"{max_value if max_value is not None else 'inf'}], got {value}"
            )
        return value

    def string(self, key: str, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str:
        """A string, optionally one of ``choices``."""
        value = self._required(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.path}.{key}: expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.path}.{key}: expected one of {list(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool | None = None) -> bool:
        """True or false."""
        value = self._required(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.path}.{key}: expected true or false, got {value!r}")
        return value

    def finish(self) -> None:
        """Raise if the mapping has keys nobody read."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise ConfigError(
                f"{self.path}: unknown field(s) {unknown}; known here: {sorted(self._used)}"
            )

    def _required(self, key: str, default: T | None) -> Any:
        self._used.add(key)
        if key in self.data:
            return self.data[key]
        if default is None:
            raise ConfigError(f"{self.path}.{key}: required field is missing")
        return default
