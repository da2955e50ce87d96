"""What Python would print raw on stderr — a warning, an exception that ends a thread — is a
JSON log line too, redacted like any other."""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from services.kit.logging import configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    thread_hook = threading.excepthook
    handler = configure_logging("payment", "INFO", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        logging.captureWarnings(False)
        threading.excepthook = thread_hook


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_warning_is_a_json_line(log_stream: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("pool nearly exhausted", RuntimeWarning, stacklevel=1)
    [line] = lines(log_stream)
    assert line["logger"] == "py.warnings" and line["level"] == "WARNING"
    assert "pool nearly exhausted" in line["message"]


def test_an_exception_ending_a_thread_is_a_redacted_json_line(log_stream: io.StringIO) -> None:
    def fail() -> None:
        raise RuntimeError("card 4242424242424242 refused")

    hook = threading.excepthook  # the kit's, installed by configure_logging
    thread = threading.Thread(target=fail, name="worker")
    thread.start()
    thread.join()
    [line] = [entry for entry in lines(log_stream) if entry["logger"] == "cinema.uncaught"]
    assert line["level"] == "ERROR" and "worker" in line["message"]
    assert "4242424242424242" not in json.dumps(line) and "RuntimeError" in line["exc_info"]
    assert hook is threading.excepthook
