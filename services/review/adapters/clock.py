"""The system clock (UTC, to the millisecond), the `Clock` port in production."""

from __future__ import annotations

from datetime import UTC, datetime

from services.review.adapters.mongo import to_millis


class MillisecondClock:
    """UTC now, cut to what a BSON date keeps (milliseconds), so stored times read back equal."""

    def now(self) -> datetime:
        return to_millis(datetime.now(UTC))
