"""Log lines are one JSON object each, carry trace and correlation ids, and never show secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.kit.logging import REDACTED, bind_correlation, configure_logging, correlation_fields, redact


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("reservation", "DEBUG", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_line_shape(log_stream: io.StringIO) -> None:
    logging.getLogger("cinema.test").info("seat %s claimed", "A1", extra={"screening_id": "s-1", "count": 2})
    [line] = lines(log_stream)
    assert line["level"] == "INFO"
    assert line["service"] == "reservation"
    assert line["logger"] == "cinema.test"
    assert line["message"] == "seat A1 claimed"
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert line["screening_id"] == "s-1" and line["count"] == 2
    assert "trace_id" not in line  # no span, no trace id


def test_trace_and_span_ids_of_the_current_span(log_stream: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("cinema.test").warning("inside a span")
    [line] = lines(log_stream)
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_bind_correlation_adds_fields_for_the_block_only(log_stream: io.StringIO) -> None:
    log = logging.getLogger("cinema.test")
    with bind_correlation("corr-1"):
        with bind_correlation(reservation_id="r-42"):
            assert correlation_fields() == {"correlation_id": "corr-1", "reservation_id": "r-42"}
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = lines(log_stream)
    assert inner["correlation_id"] == "corr-1" and inner["reservation_id"] == "r-42"
    assert outer["correlation_id"] == "corr-1" and "reservation_id" not in outer
    assert "correlation_id" not in after


def test_secrets_are_redacted_in_message_extras_and_tracebacks(log_stream: io.StringIO) -> None:
    log = logging.getLogger("cinema.test")
    log.info(
        "paying with %s, header Authorization: Bearer abc.def-ghi, password=hunter2, db postgres://app:s3cret@db/x",
        "4111 1111 1111 1111",
        extra={"card_number": "4111111111111111", "password": "hunter2", "note": "card 5500-0000-0000-0004"},
    )
    try:
        raise ValueError("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl leaked with 4012888888881881")
    except ValueError:
        log.exception("failed")
    text = log_stream.getvalue()
    for secret in ("4111", "abc.def-ghi", "hunter2", "s3cret", "5500-0000", "eyJzdWIi", "4012888888881881"):
        assert secret not in text, secret
    first, second = lines(log_stream)
    assert first["card_number"] == REDACTED and first["password"] == REDACTED
    assert "Bearer [REDACTED]" in first["message"]
    assert "postgres://app:[REDACTED]@db/x" in first["message"]
    assert "ValueError" in second["exc_info"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("order 123456789012 of 12 digits stays", "order 123456789012 of 12 digits stays"),
        ("pan 1234567890123 (13)", f"pan {REDACTED} (13)"),
        ("pan 1234567890123456789 (19)", f"pan {REDACTED} (19)"),
        ('{"password": "p@ss word"}', f'{{"password": {REDACTED}}}'),
        ("bearer xyz", f"bearer {REDACTED}"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
