"""Logging in Flux's shape: zap-style JSON (or console) lines with reconcile context.

A JSON line looks like Flux's: ``{"level":"info","ts":"…Z","msg":"…","controller":
"imagerepository","controllerGroup":"image.toolkit.fluxcd.io","controllerKind":
"ImageRepository","name":"podinfo","namespace":"flux-system","reconcileID":"…"}``.
The reconcile context is carried in a ``contextvars`` variable, so every line logged
while a reconcile runs is tagged without passing loggers around. Nothing here formats
secrets: callers pass messages that are already free of them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TextIO

TRACE: Final = 5
logging.addLevelName(TRACE, "trace")

_LEVELS: Final = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO,
                  "error": logging.ERROR}
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "imagereflector_log_context", default=_EMPTY
)

LOGGER_NAME: Final = "imagereflector"


def get_logger(name: str = "") -> logging.Logger:
    """A logger under the project's root logger."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields (controller, name, namespace, reconcileID…) to every line in the block."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def _level_name(record: logging.LogRecord) -> str:
    if record.levelno <= TRACE:
        return "trace"
    if record.levelno >= logging.ERROR:
        return "error"
    return record.levelname.lower()


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(_context.get())
    for key, value in vars(record).items():
        if key not in _STANDARD and key != "fields":
            fields[key] = value
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        fields.update(extra)
    if record.exc_info and record.exc_info[1] is not None:
        fields.setdefault("error", str(record.exc_info[1]))
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object per line with zap's key names (``level``, ``ts``, ``msg``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"level": _level_name(record), "ts": _timestamp(record),
                                "msg": record.getMessage()}
        if record.name != LOGGER_NAME and record.name.startswith(LOGGER_NAME + "."):
            line["logger"] = record.name[len(LOGGER_NAME) + 1:]
        line.update(_fields(record))
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """zap's console encoding: tab-separated time, level, message and a JSON of fields."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), _level_name(record).upper(), record.getMessage()]
        fields = _fields(record)
        if fields:
            parts.append(json.dumps(fields, default=str, ensure_ascii=False))
        return "\t".join(parts)


class _CLIFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_level_name(record)}: {record.getMessage()}"


def setup_cli_logging(stream: TextIO | None = None) -> None:
    """Logging for one-shot commands (``scan``, ``policy``): warnings and errors only, as
    ``warning: <message>`` lines on standard error, apart from the command's output."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_CLIFormatter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False


def setup_logging(*, level: str = "info", encoding: str = "json",
                  stream: TextIO | None = None) -> None:
    """Configure the project's root logger; replaces handlers set by an earlier call."""
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}: use trace, debug, info or error")
    if encoding not in ("json", "console"):
        raise ValueError(f"unknown log encoding {encoding!r}: use json or console")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if encoding == "json" else ConsoleFormatter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    root.propagate = False
