"""A trace as a waterfall: Jaeger's JSON (spans, processes, CHILD_OF/FOLLOWS_FROM references)
turned into rows in tree order, each with its depth, service, span name, offset and duration
from the trace's start, and whether it failed. Pure: no I/O.

The consumers of a reservation's events run in traces of their own once a message crossed NATS
(linked by FOLLOWS_FROM) or under the relay's publish span (CHILD_OF): both are drawn under
their parent when the parent is in the trace.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

RESERVATION_TAG = "cinema.reservation_id"
RESERVATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WaterfallRow:
    span_id: str
    depth: int
    service: str
    name: str
    kind: str
    start_ms: float
    duration_ms: float
    error: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tags(raw: dict[str, Any]) -> dict[str, Any]:
    return {t.get("key"): t.get("value") for t in raw.get("tags") or []}


def _failed(tags: dict[str, Any]) -> bool:
    if tags.get("error") in (True, "true"):
        return True
    if str(tags.get("otel.status_code", "")).upper() == "ERROR":
        return True
    code = tags.get("rpc.grpc.status_code")
    return code is not None and str(code) not in ("0", "OK")


def waterfall(trace: dict[str, Any]) -> list[WaterfallRow]:
    processes = trace.get("processes") or {}
    spans = {raw["spanID"]: raw for raw in trace.get("spans") or [] if "spanID" in raw}
    if not spans:
        return []
    t0 = min(int(raw.get("startTime", 0)) for raw in spans.values())
    children: dict[str | None, list[dict[str, Any]]] = {}
    for raw in spans.values():
        refs = raw.get("references") or []
        parent = next((r["spanID"] for r in refs if r.get("refType") == "CHILD_OF" and r.get("spanID") in spans), None)
        if parent is None:
            parent = next((r["spanID"] for r in refs if r.get("spanID") in spans), None)
        children.setdefault(parent, []).append(raw)
    rows: list[WaterfallRow] = []
    seen: set[str] = set()

    def walk(parent: str | None, depth: int) -> None:
        for raw in sorted(children.get(parent, []), key=lambda s: int(s.get("startTime", 0))):
            if raw["spanID"] in seen:
                continue
            seen.add(raw["spanID"])
            tags = _tags(raw)
            rows.append(
                WaterfallRow(
                    span_id=raw["spanID"],
                    depth=depth,
                    service=str(processes.get(raw.get("processID"), {}).get("serviceName", "?")),
                    name=str(raw.get("operationName", "")),
                    kind=str(tags.get("span.kind", "")),
                    start_ms=(int(raw.get("startTime", 0)) - t0) / 1000,
                    duration_ms=int(raw.get("duration", 0)) / 1000,
                    error=_failed(tags),
                )
            )
            walk(raw["spanID"], depth + 1)

    walk(None, 0)
    return rows


def reservation_ids(traces: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """The reservations named by these traces, newest first, each once."""
    found: list[tuple[int, str]] = []
    for trace in traces:
        for raw in trace.get("spans") or []:
            value = _tags(raw).get(RESERVATION_TAG)
            if isinstance(value, str) and RESERVATION_ID.match(value):
                found.append((int(raw.get("startTime", 0)), value))
    ids: list[str] = []
    for _, value in sorted(found, reverse=True):
        if value not in ids:
            ids.append(value)
    return ids[:limit]


def best_trace(traces: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of the traces of one reservation, the one with the most spans (its creation)."""
    return max(traces, key=lambda t: len(t.get("spans") or []), default=None)
