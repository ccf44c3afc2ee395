"""Log lines for people and for machines: ``--log-format text|json`` of the controller and the
twin (default ``auto``: text when stderr is a terminal, JSON lines otherwise, as a log
collector in a cluster wants them).

Both formats carry the same content: time (UTC), level, logger, message and the record's
``fields`` (pass ``extra={"fields": {...}}``). Standard library only, so that the controller
and the twin (which never import each other) share it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal

LogFormat = Literal["auto", "text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "text", "json")


def _entry(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
            timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        entry.update(fields)
    if record.exc_info:
        entry["exception"] = formatter.formatException(record.exc_info)
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``,
    plus the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(self, record), default=str, sort_keys=False)


class TextFormatter(logging.Formatter):
    """``14:50:03.123Z INFO  decision ScaleUp: ... | reason=ScaleUp replicas={"a":3}``: the
    time (UTC), the level, the message, then the record's fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(self, record)
        exception = entry.pop("exception", None)
        head = (f"{entry.pop('time')[11:23]}Z {entry.pop('level').upper():<7} "
                f"{entry.pop('message')}")
        entry.pop("logger")
        fields = " ".join(f"{key}={_compact(value)}" for key, value in entry.items())
        line = f"{head} | {fields}" if fields else head
        return f"{line}\n{exception}" if exception else line


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str,
                                                           separators=(",", ":"))


def resolve_format(log_format: LogFormat, stream: Any = None) -> Literal["text", "json"]:
    """``auto`` -> ``text`` when ``stream`` (default stderr) is a terminal, else ``json``."""
    if log_format != "auto":
        return log_format
    stream = sys.stderr if stream is None else stream
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def formatter_for(log_format: LogFormat, stream: Any = None) -> logging.Formatter:
    """The formatter of ``log_format`` (``auto`` resolved against ``stream``)."""
    return TextFormatter() if resolve_format(log_format, stream) == "text" else JsonFormatter()


def configure_logging(level: str = "INFO", log_format: LogFormat = "auto") -> None:
    """Send log records to stderr in ``log_format`` (one handler: calling again replaces its
    format and sets the level)."""
    root = logging.getLogger()
    formatter = formatter_for(log_format)
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter | TextFormatter)]
    if ours:
        ours[0].setFormatter(formatter)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
