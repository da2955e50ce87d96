"""The series every outbox relay reports, whichever store its outbox lives in.

Labels: `service` (who owns the outbox) and `outbox` (the table `outbox` on PostgreSQL, the
collection on a document store, where pending events ride in the aggregates).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

_LABELS = ("service", "outbox")

OUTBOX_PUBLISHED = Counter("cinema_outbox_published_total", "Events the outbox relay published", _LABELS)
OUTBOX_BACKLOG = Gauge("cinema_outbox_backlog", "Events written to the outbox and not yet published", _LABELS)
OUTBOX_OLDEST_AGE = Gauge(
    "cinema_outbox_oldest_age_seconds", "Age of the oldest event not yet published (0 when none)", _LABELS
)
