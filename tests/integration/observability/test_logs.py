"""The logs of a full run at DEBUG level: every line is one JSON object with the keys that
correlate it, and no card number, token or password appears anywhere in them."""

from __future__ import annotations

import json
import re

import pytest

from scripts.stack.stores import PG_PASSWORD
from tests.integration.observability.system import APPROVED_CARD, DECLINED_CARD, BookingRun, ObservedSystem

pytestmark = pytest.mark.integration

REQUIRED = ("timestamp", "level", "service", "logger", "message")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")
BEARER = re.compile(r"(?i)bearer\s+(?!\[REDACTED\])\S")
# A secret-named key followed by a value that is not the redaction mark.
SECRET_VALUE = re.compile(
    r"""(?i)["']?\b(password|passwd|client_secret|secret|api_key|token)["']?\s*[:=]\s*["']?(?!\[REDACTED\]|["',}\s])"""
)


def lines_of(system: ObservedSystem) -> dict[str, list[str]]:
    return {name: [line for line in text.splitlines() if line.strip()] for name, text in system.logs().items()}


async def test_every_line_is_json_with_service_level_time_and_trace(
    run: BookingRun, observed_system: ObservedSystem
) -> None:
    seen_levels: set[str] = set()
    correlated: dict[str, set[str]] = {}
    for name, lines in lines_of(observed_system).items():
        assert lines, f"{name} wrote no log"
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{name}: not a JSON line: {line[:300]}") from None
            missing = [key for key in REQUIRED if key not in entry]
            assert not missing, f"{name}: {missing} missing in {line[:300]}"
            assert entry["service"] == name
            seen_levels.add(entry["level"])
            if "trace_id" in entry:
                assert re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"]) and re.fullmatch(
                    r"[0-9a-f]{16}", entry["span_id"]
                )
            for key in ("reservation_id", "review_id"):
                if key in entry and "trace_id" in entry:
                    correlated.setdefault(key, set()).add(entry[key])
    assert "DEBUG" in seen_levels, "the run logs at DEBUG"
    # Lines written while handling the run's aggregates carry their key and the trace.
    reservations = {*run.confirmed, *run.cancelled, run.declined}
    assert reservations & correlated.get("reservation_id", set()), correlated
    assert run.review_id in correlated.get("review_id", set()), correlated


async def test_no_card_number_token_or_password_is_ever_logged(
    run: BookingRun, observed_system: ObservedSystem
) -> None:
    service_token = (observed_system.identity.root / "reservation.token").read_text().strip()
    secrets = {
        "card number": [APPROVED_CARD, DECLINED_CARD, "4242 4242 4242 4242", "4242-4242-4242-4242"],
        "bearer token": [*run.tokens, service_token],
        "database password": [PG_PASSWORD],
    }
    for name, lines in lines_of(observed_system).items():
        text = "\n".join(lines)
        for what, values in secrets.items():
            for value in values:
                assert value not in text, f"{name} logged a {what}"
        for pattern in (JWT, BEARER, SECRET_VALUE):
            match = pattern.search(text)
            assert match is None, f"{name} logged {match.group(0) if match else ''!r}..."
