"""Structured JSON logs: one JSON object per line on stderr, with trace and correlation ids.

Every line carries `timestamp` (ISO-8601 UTC), `level`, `service`, `logger`, `message`,
`trace_id`/`span_id` of the current OpenTelemetry span (when there is one), the fields bound
with `bind_correlation` (e.g. `correlation_id`, `reservation_id`) and any `extra=` fields.
A redaction filter runs before formatting so card numbers, bearer tokens, JWTs and passwords
never reach the log, whoever wrote the log call.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType, TracebackType
from typing import Any, TextIO

from opentelemetry import trace

REDACTED = "[REDACTED]"

_NO_CORRELATION: Mapping[str, str] = MappingProxyType({})
_correlation: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "cinema_correlation", default=_NO_CORRELATION
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime", "taskName"}
)

# Keys whose values are secrets whatever they look like.
_SECRET_KEYS = re.compile(r"pass(word|wd|phrase)?|secret|token|authorization|api[_-]?key|card[_-]?number|pan|cvv|cvc")

# 13 to 19 digits, optionally grouped by single spaces or dashes: a payment card number.
_CARD = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# A compact JWS without the `Bearer` prefix (three base64url segments, header starting `eyJ`).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# password=..., "password": "...", passwd: ... (also secret/token/api_key)
_KEY_VALUE = re.compile(
    r"""(?i)(["']?\b(?:password|passwd|pwd|secret|api[_-]?key|token)["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&}]+)"""
)
# Credentials inside URLs: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")


def redact(text: str) -> str:
    """Return `text` with card numbers, bearer tokens, JWTs and passwords replaced."""
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    text = _KEY_VALUE.sub(rf"\1{REDACTED}", text)
    return _CARD.sub(REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.fullmatch(key.lower()) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


class RedactionFilter(logging.Filter):
    """Rewrites the message and extra fields of a record so secrets never get formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _redact_value(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _utc_iso(created: float) -> str:
    return dt.datetime.fromtimestamp(created, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _utc_iso(record.created),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        entry.update(_correlation.get())
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


@contextmanager
def bind_correlation(correlation_id: str | None = None, **fields: str) -> Iterator[None]:
    """Add correlation fields to every log line written inside the block (this task only).

    `bind_correlation("r-42")` sets `correlation_id`; keyword fields name the domain key,
    e.g. `bind_correlation(reservation_id="r-42")`. Nested blocks add to the outer ones.
    """
    bound = dict(_correlation.get())
    if correlation_id is not None:
        bound["correlation_id"] = correlation_id
    bound.update({key: str(value) for key, value in fields.items()})
    token = _correlation.set(bound)
    try:
        yield
    finally:
        _correlation.reset(token)


def correlation_fields() -> Mapping[str, str]:
    """The correlation fields bound in the current context (e.g. for event envelopes)."""
    return _correlation.get()


_HANDLER_NAME = "cinema-json"


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Route the root logger to one JSON handler on stderr; calling it again replaces the handler."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The CEL evaluator behind protovalidate logs the request's field values at DEBUG (a CVC,
    # for one): never let it reach the logs, whatever the service's level.
    logging.getLogger("celpy").setLevel(logging.WARNING)
    # What Python itself would print raw on stderr — warnings, an exception that ends a
    # thread or the process — goes through the same JSON handler (and its redaction) instead.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    sys.excepthook = _log_uncaught_exception
    return handler


def _log_uncaught_exception(exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, traceback)
        return
    logging.getLogger("cinema.uncaught").critical("uncaught exception", exc_info=(exc_type, exc, traceback))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("cinema.uncaught").error(
        "exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
