"""A payment card as it comes in: validated, and never shown whole.

The number and CVC live only in this object, only as long as the request; `repr`, `str`
and every attribute a log or a traceback could print show the brand and last four digits
at most. Payments keep `last4` and `brand`, nothing else.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, NoReturn

from services.kit.errors import FieldViolation, InvalidArgument

MIN_DIGITS, MAX_DIGITS = 12, 19


class CardBrand(enum.StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    UNKNOWN = "unknown"


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every card number carries (catches a mistyped digit)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def brand_of(digits: str) -> CardBrand:
    if digits.startswith("4"):
        return CardBrand.VISA
    if digits[:2] in {"34", "37"}:
        return CardBrand.AMEX
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return CardBrand.MASTERCARD
    if digits.startswith(("6011", "65")):
        return CardBrand.DISCOVER
    return CardBrand.UNKNOWN


class Card:
    """A validated card. Build it with `Card.parse`; read the number only through `reveal_number`."""

    __slots__ = ("_cvc", "_number", "brand", "expiry_month", "expiry_year", "last4")

    _number: str
    _cvc: str
    brand: CardBrand
    expiry_month: int
    expiry_year: int
    last4: str

    def __init__(self, number: str, expiry_month: int, expiry_year: int, cvc: str) -> None:
        """Format checks only; `parse` adds the expiry check against the current time."""
        digits = number.replace(" ", "").replace("-", "")
        violations: list[FieldViolation] = []
        brand = CardBrand.UNKNOWN
        if not (digits.isascii() and digits.isdigit() and MIN_DIGITS <= len(digits) <= MAX_DIGITS):
            violations.append(FieldViolation("card.number", f"must be {MIN_DIGITS} to {MAX_DIGITS} digits"))
        elif not luhn_valid(digits):
            violations.append(FieldViolation("card.number", "is not a valid card number (checksum)"))
        else:
            brand = brand_of(digits)
        if not 1 <= expiry_month <= 12:
            violations.append(FieldViolation("card.expiry_month", "must be 1..12"))
        if not 2000 <= expiry_year <= 2100:
            violations.append(FieldViolation("card.expiry_year", "must be a four-digit year"))
        cvc_length = 4 if brand is CardBrand.AMEX else 3
        if not (cvc.isascii() and cvc.isdigit() and len(cvc) == cvc_length):
            violations.append(FieldViolation("card.cvc", f"must be {cvc_length} digits"))
        if violations:
            # The message names fields and rules only: never the number it refused.
            raise InvalidArgument("; ".join(f"{v.field} {v.description}" for v in violations), tuple(violations))
        set_ = object.__setattr__
        set_(self, "_number", digits)
        set_(self, "_cvc", cvc)
        set_(self, "brand", brand)
        set_(self, "expiry_month", expiry_month)
        set_(self, "expiry_year", expiry_year)
        set_(self, "last4", digits[-4:])

    @classmethod
    def parse(cls, number: str, expiry_month: int, expiry_year: int, cvc: str, *, now: datetime) -> Card:
        """A card fit to charge now: well formed and not expired (a card is good through its expiry month)."""
        card = cls(number, expiry_month, expiry_year, cvc)
        if card.is_expired(now):
            raise InvalidArgument.for_field("card.expiry_year", "the card has expired")
        return card

    def is_expired(self, now: datetime) -> bool:
        return (self.expiry_year, self.expiry_month) < (now.year, now.month)

    def reveal_number(self) -> str:
        """The full number, for the card processor only. Never log or store it."""
        return self._number

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Card is immutable")

    def __repr__(self) -> str:
        return f"Card({self.brand.value} ending {self.last4})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickling would write the number somewhere (a cache, a queue): refuse.
        raise TypeError("a Card cannot be pickled")
