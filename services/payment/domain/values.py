"""Money in the payment context: whole minor units of one currency, never a float.

The booking context has the same value object; each service owns its own model so that
neither deploys with the other's code (a candidate for services/kit if it grows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.kit.errors import InvalidArgument

_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise InvalidArgument.for_field("amount.minor_units", "must be an integer number of minor units")
        if self.amount_minor < 0:
            raise InvalidArgument.for_field("amount.minor_units", f"must not be negative, got {self.amount_minor}")
        if not _CURRENCY.fullmatch(self.currency):
            raise InvalidArgument.for_field("amount.currency_code", f"must be an ISO 4217 code, got {self.currency!r}")
