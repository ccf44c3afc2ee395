"""Readers for public LLM inference request traces.

The format is detected from the first line of the file:

=========== ====================================================================================
format      first line
=========== ====================================================================================
azure       ``TIMESTAMP,ContextTokens,GeneratedTokens`` -- Azure LLM inference traces 2023 and
            2024 (Azure/AzurePublicDataset, CC-BY 4.0). Timestamps are wall-clock date-times,
            ``2023-11-16 18:17:03.9799600`` (7 fractional digits) or ``2024-05-10
            00:00:00.009930+00:00``; any number of fractional digits (0-9), a ``T`` separator
            and a ``Z`` / ``+HH:MM`` offset are accepted. Times without an offset are taken as
            UTC (only differences matter). ``GeneratedTokens == 0`` is clamped to 1 output token
            and counted in ``metadata["clamped_output"]``: such a request still arrived and
            still needed a prefill (which in vLLM emits the first token), so dropping it would
            understate the load.
burstgpt    ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`` -- BurstGPT
            (HPMLL/BurstGPT). ``Timestamp`` is seconds from the trace start. Rows with
            ``Response tokens == 0`` are failed requests and are skipped (counted in
            ``metadata["skipped"]["failed_requests"]``); ``model=`` keeps one model only.
mooncake    a JSON object per line with ``timestamp`` (milliseconds), ``input_length``,
            ``output_length``; other keys (``hash_ids``) are ignored (kvcache-ai/Mooncake).
plain       ``arrival_s,prompt_tokens,output_tokens`` -- this package's own CSV format.
=========== ====================================================================================

Every malformed input raises :class:`TraceFormatError` naming the file, the 1-based line (the
header is line 1), the field, the bad value and what was expected.
"""

from __future__ import annotations

import csv
import json
import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from rlscale.configschema import MAX_SPAN_S
from rlscale.sim.workload.workload import Workload

__all__ = ["KNOWN_FORMATS", "TraceFormatError", "read_trace"]


class TraceFormatError(ValueError):
    """A trace file is empty, has an unknown header, or a row that cannot be parsed.

    Attributes:
        path: the file.
        line: 1-based line number of the offending line (the header is line 1), if any.
        field: the column / key that holds the bad value, if any.
    """

    def __init__(
        self, path: Path, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        where = path.name
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f", field {field}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.field = field


@dataclass(frozen=True)
class _Format:
    name: str
    description: str
    columns: tuple[str, ...]  # required columns (CSV) or keys (JSON lines)


_AZURE = _Format(
    "azure",
    "Azure LLM inference 2023/2024 CSV (TIMESTAMP,ContextTokens,GeneratedTokens)",
    ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
)
_BURSTGPT = _Format(
    "burstgpt",
    "BurstGPT CSV (Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type)",
    ("Timestamp", "Model", "Request tokens", "Response tokens"),
)
_PLAIN = _Format(
    "plain",
    "plain CSV (arrival_s,prompt_tokens,output_tokens)",
    ("arrival_s", "prompt_tokens", "output_tokens"),
)
_MOONCAKE = _Format(
    "mooncake",
    'Mooncake JSON lines ({"timestamp": <ms>, "input_length": <int>, "output_length": <int>})',
    ("timestamp", "input_length", "output_length"),
)
_CSV_FORMATS = (_AZURE, _BURSTGPT, _PLAIN)
KNOWN_FORMATS: tuple[str, ...] = tuple(f.description for f in (*_CSV_FORMATS, _MOONCAKE))
"""Human-readable descriptions of the trace formats :func:`read_trace` understands."""

MAX_TOKENS = 2**31 - 1
"""Largest token count accepted in a trace (anything larger is a corrupt value)."""

_TIMESTAMP_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)


class _Columns:
    """Growing typed columns; ``arrival`` holds seconds relative to an arbitrary origin."""

    def __init__(self) -> None:
        self.arrival = array("d")
        self.prompt = array("q")
        self.output = array("q")


@dataclass
class _Result:
    cols: _Columns
    start_label: object  # the original earliest timestamp, as the trace writes it
    start_s: float  # the earliest arrival on the trace's own clock, in seconds
    rows: int = 0
    skipped: dict[str, int] | None = None
    clamped_output: int = 0


def read_trace(path: str | Path, *, model: str | None = None) -> Workload:
    """Read a request trace (format detected from its first line) into a :class:`Workload`.

    Arrivals are sorted (stable) and shifted so the first one is at 0 s.

    Args:
        path: the trace file.
        model: BurstGPT only: keep only rows whose ``Model`` equals this (case-insensitive),
            e.g. ``"ChatGPT"`` or ``"GPT-4"``.

    Returns:
        A workload with ``source`` = the file name and ``metadata`` keys ``format``, ``path``,
        ``start`` (the earliest timestamp as written in the file), ``start_s`` (the same in
        seconds on the trace's own clock: Unix time for Azure), ``rows`` (data rows read),
        ``skipped`` (reason -> rows dropped), ``clamped_output`` and ``reordered`` (whether
        the file was not already in arrival order).

    Raises:
        TraceFormatError: the file is empty, of an unknown format, or malformed.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            while first and not first.strip():
                first = f.readline()
            if not first:
                raise TraceFormatError(path, "empty file; expected a header line or JSON lines")
            f.seek(0)
            if first.lstrip().startswith("{"):
                if model is not None:
                    raise _model_unsupported(path, model, _MOONCAKE)
                fmt, result = _MOONCAKE, _read_mooncake(path, f)
            else:
                fmt, result = _read_csv(path, f, model)
    except UnicodeDecodeError as err:
        raise TraceFormatError(path, f"not UTF-8 text ({err.reason})") from None
    if result.rows == 0:
        raise TraceFormatError(path, "contains no requests (only a header)")
    if len(result.cols.arrival) == 0:
        raise TraceFormatError(
            path, f"no requests left after filtering (skipped: {result.skipped})"
        )
    return _to_workload(path, fmt, result)


def _model_unsupported(path: Path, model: str, fmt: _Format) -> TraceFormatError:
    return TraceFormatError(
        path,
        f"model={model!r} filtering is only supported for BurstGPT traces, "
        f"this is a {fmt.description}",
    )


def _to_workload(path: Path, fmt: _Format, result: _Result) -> Workload:
    arrival = np.frombuffer(result.cols.arrival, dtype=np.float64)
    prompt = np.frombuffer(result.cols.prompt, dtype=np.int64)
    output = np.frombuffer(result.cols.output, dtype=np.int64)
    reordered = bool(np.any(np.diff(arrival) < 0))
    if reordered:
        order = np.argsort(arrival, kind="stable")
        arrival, prompt, output = arrival[order], prompt[order], output[order]
    span = float(arrival[-1] - arrival[0])
    if not span <= MAX_SPAN_S:
        raise TraceFormatError(path, f"arrival times span {span:g} s, more than {MAX_SPAN_S:g} s "
                               f"(a year): a corrupt timestamp?", field="timestamp")
    metadata: dict[str, object] = {
        "format": fmt.name,
        "path": str(path),
        "start": result.start_label,
        "start_s": result.start_s,
        "rows": result.rows,
        "skipped": dict(result.skipped or {}),
        "clamped_output": result.clamped_output,
        "reordered": reordered,
    }
    return Workload(
        arrival_s=arrival - arrival[0],
        prompt_tokens=prompt.copy(),
        output_tokens=output.copy(),
        source=path.name,
        metadata=metadata,
    )


# ----------------------------------------------------------------------------------- CSV formats


class _CsvReader(Protocol):
    """The part of ``csv.reader``'s result used here."""

    @property
    def line_num(self) -> int: ...

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def _detect_csv(path: Path, header: list[str], line: int) -> tuple[_Format, dict[str, int]]:
    names = [h.strip() for h in header]
    scores = [(len(set(names) & set(fmt.columns)), fmt) for fmt in _CSV_FORMATS]
    best_score, best = max(scores, key=lambda s: s[0])
    if best_score == 0:
        raise TraceFormatError(
            path,
            f"unknown header {','.join(names)!r}; known formats: " + "; ".join(KNOWN_FORMATS),
            line=line,
        )
    missing = [c for c in best.columns if c not in names]
    if missing:
        raise TraceFormatError(
            path,
            f"header looks like {best.description} but is missing column(s) "
            f"{', '.join(missing)}; got {','.join(names)!r}",
            line=line,
        )
    return best, {name: names.index(name) for name in best.columns}


def _read_csv(path: Path, f: Iterator[str], model: str | None) -> tuple[_Format, _Result]:
    reader: _CsvReader = csv.reader(f)
    try:
        header: list[str] = []
        while not header:
            header = next(reader)
        fmt, idx = _detect_csv(path, header, reader.line_num)
        if model is not None and fmt is not _BURSTGPT:
            raise _model_unsupported(path, model, fmt)
        rows = _rows(path, reader, len(header))
        if fmt is _AZURE:
            result = _read_azure(path, rows, idx)
        elif fmt is _BURSTGPT:
            result = _read_burstgpt(path, rows, idx, model)
        else:
            result = _read_plain(path, rows, idx)
    except csv.Error as err:
        raise TraceFormatError(path, f"not valid CSV ({err})", line=reader.line_num) from None
    return fmt, result


def _rows(path: Path, reader: _CsvReader, ncols: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, row)`` for the non-blank data rows, checking the column count."""
    for row in reader:
        line_num = reader.line_num
        if not row:
            continue
        if len(row) != ncols:
            raise TraceFormatError(
                path,
                f"expected {ncols} comma-separated columns like the header, got {len(row)}",
                line=line_num,
            )
        yield line_num, row


def _bad(path: Path, line: int, field: str, expected: str, value: object) -> TraceFormatError:
    return TraceFormatError(path, f"expected {expected}, got {value!r}", line=line, field=field)


def _count(path: Path, line: int, field: str, text: str, minimum: int) -> int:
    """Parse a token count; ``minimum`` is 1 for prompts (0 only where the caller handles it)."""
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise _bad(path, line, field, "a non-negative integer", text) from None
        if not as_float.is_integer():
            raise _bad(path, line, field, "a non-negative integer", text) from None
        value = int(as_float)
    if value < 0:
        raise _bad(path, line, field, "a non-negative integer", text)
    if value < minimum:
        raise _bad(path, line, field, f"an integer >= {minimum}", text)
    if value > MAX_TOKENS:
        raise _bad(path, line, field, f"a token count <= {MAX_TOKENS}", text)
    return value


def _seconds(path: Path, line: int, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(path, line, field, "a number of seconds", text) from None
    if not math.isfinite(value):
        raise _bad(path, line, field, "a finite number of seconds", text)
    return value


def _read_azure(path: Path, rows: Iterator[tuple[int, list[str]]], idx: dict[str, int]) -> _Result:
    i_ts, i_p, i_o = idx["TIMESTAMP"], idx["ContextTokens"], idx["GeneratedTokens"]
    cols = _Columns()
    cache: dict[tuple[str, str, str | None], int] = {}  # whole-second prefix -> Unix seconds
    origin: int | None = None
    best_label, best_s = "", math.inf
    n = clamped = 0
    for line, row in rows:
        text = row[i_ts]
        m = _TIMESTAMP_RE.fullmatch(text.strip())
        if m is None:
            raise _bad(
                path,
                line,
                "TIMESTAMP",
                "a date-time like '2023-11-16 18:17:03.9799600' (optionally +HH:MM)",
                text,
            )
        date, clock, frac, offset = m.groups()
        key = (date, clock, offset)
        whole = cache.get(key)
        if whole is None:
            whole = _unix_seconds(path, line, text, date, clock, offset)
            cache[key] = whole
        if origin is None:
            origin = whole
        t = (whole - origin) + (int(frac) / 10 ** len(frac) if frac else 0.0)
        prompt = _count(path, line, "ContextTokens", row[i_p], 1)
        output = _count(path, line, "GeneratedTokens", row[i_o], 0)
        if output == 0:
            output, clamped = 1, clamped + 1
        if t < best_s:
            best_s, best_label = t, text.strip()
        cols.arrival.append(t)
        cols.prompt.append(prompt)
        cols.output.append(output)
        n += 1
    start_s = (origin or 0) + (best_s if n else 0.0)
    return _Result(cols, best_label, start_s, rows=n, skipped={}, clamped_output=clamped)


def _unix_seconds(
    path: Path, line: int, text: str, date: str, clock: str, offset: str | None
) -> int:
    try:
        stamp = datetime.fromisoformat(f"{date} {clock}").replace(tzinfo=timezone.utc)
        if offset and offset != "Z":
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:])
            if hours > 23 or minutes > 59:
                raise ValueError(f"bad UTC offset {offset}")
            stamp -= sign * timedelta(hours=hours, minutes=minutes)
    except ValueError:
        raise _bad(path, line, "TIMESTAMP", "a valid calendar date-time", text) from None
    return int(stamp.timestamp())


def _read_burstgpt(
    path: Path, rows: Iterator[tuple[int, list[str]]], idx: dict[str, int], model: str | None
) -> _Result:
    i_ts, i_m = idx["Timestamp"], idx["Model"]
    i_p, i_o = idx["Request tokens"], idx["Response tokens"]
    want = model.strip().lower() if model is not None else None
    cols = _Columns()
    failed = other = n = 0
    seen_models: set[str] = set()
    best_label, best_s = "", math.inf
    for line, row in rows:
        n += 1
        t = _seconds(path, line, "Timestamp", row[i_ts])
        prompt = _count(path, line, "Request tokens", row[i_p], 1)
        output = _count(path, line, "Response tokens", row[i_o], 0)
        name = row[i_m].strip()
        seen_models.add(name)
        if want is not None and name.lower() != want:
            other += 1
            continue
        if output == 0:
            failed += 1
            continue
        if t < best_s:
            best_s, best_label = t, row[i_ts].strip()
        cols.arrival.append(t)
        cols.prompt.append(prompt)
        cols.output.append(output)
    if want is not None and n and other == n:
        raise TraceFormatError(
            path, f"no rows with Model {model!r}; models in the file: {sorted(seen_models)}"
        )
    skipped = {"failed_requests": failed, "other_models": other}
    return _Result(cols, best_label, best_s if cols.arrival else 0.0, rows=n, skipped=skipped)


def _read_plain(path: Path, rows: Iterator[tuple[int, list[str]]], idx: dict[str, int]) -> _Result:
    i_t, i_p, i_o = idx["arrival_s"], idx["prompt_tokens"], idx["output_tokens"]
    cols = _Columns()
    n = 0
    for line, row in rows:
        cols.arrival.append(_seconds(path, line, "arrival_s", row[i_t]))
        cols.prompt.append(_count(path, line, "prompt_tokens", row[i_p], 1))
        cols.output.append(_count(path, line, "output_tokens", row[i_o], 1))
        n += 1
    start = float(min(cols.arrival)) if n else 0.0
    return _Result(cols, start, start, rows=n, skipped={})


# ------------------------------------------------------------------------------ JSON lines format


def _json_count(path: Path, line: int, key: str, value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(path, line, key, "a non-negative integer", value)
    if value < 1:
        raise _bad(path, line, key, "an integer >= 1", value)
    if value > MAX_TOKENS:
        raise _bad(path, line, key, f"a token count <= {MAX_TOKENS}", value)
    return value


def _json_millis(path: Path, line: int, value: object) -> float:
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            ms = float(value)
        except OverflowError:
            ms = math.inf
        if math.isfinite(ms):
            return ms
    raise _bad(path, line, "timestamp", "a finite number of milliseconds", value)


def _read_mooncake(path: Path, f: Iterator[str]) -> _Result:
    cols = _Columns()
    n = 0
    best_ms = math.inf
    for line, text in enumerate(f, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as err:
            raise TraceFormatError(
                path,
                f"expected a JSON object, got invalid JSON at column {err.colno} ({err.msg})",
                line=line,
            ) from None
        if not isinstance(record, dict):
            raise TraceFormatError(
                path, f"expected a JSON object, got {type(record).__name__}", line=line
            )
        missing = [k for k in _MOONCAKE.columns if k not in record]
        if missing:
            known = "" if n else "; known formats: " + "; ".join(KNOWN_FORMATS)
            raise TraceFormatError(
                path,
                f"missing key(s) {', '.join(missing)} for {_MOONCAKE.description}{known}",
                line=line,
            )
        ts = _json_millis(path, line, record["timestamp"])
        prompt = _json_count(path, line, "input_length", record["input_length"])
        output = _json_count(path, line, "output_length", record["output_length"])
        best_ms = min(best_ms, float(ts))
        cols.arrival.append(float(ts) / 1000.0)
        cols.prompt.append(prompt)
        cols.output.append(output)
        n += 1
    start_ms = best_ms if n else 0.0
    label: object = int(start_ms) if float(start_ms).is_integer() else start_ms
    return _Result(cols, label, start_ms / 1000.0, rows=n, skipped={})
