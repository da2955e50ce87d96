"""Values of the catalog: a hall's seat map, a ticket price.

They check their own rules, so a screening can only be built from a sensible seat map and
price, whoever builds it (the gRPC adapter has also validated the contract's rules by then).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.kit.errors import FieldViolation, InvalidArgument

MAX_ROWS = 26  # rows are lettered A..Z
MAX_SEATS_PER_ROW = 99
_SEAT = re.compile(r"^(?P<row>[A-Z])(?P<number>[1-9][0-9]?)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def invalid(field_path: str, description: str) -> InvalidArgument:
    return InvalidArgument.for_field(field_path, description)


def raise_violations(what: str, violations: list[FieldViolation]) -> None:
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid {what}: {summary}", tuple(violations))


@dataclass(frozen=True)
class SeatMap:
    """Rows A.. of `seats_per_row` seats each; `blocked` seats are never sold (e.g. broken)."""

    rows: int
    seats_per_row: int
    blocked: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        violations: list[FieldViolation] = []
        if not 1 <= self.rows <= MAX_ROWS:
            violations.append(FieldViolation("screening.seat_map.rows", f"must be between 1 and {MAX_ROWS}"))
        if not 1 <= self.seats_per_row <= MAX_SEATS_PER_ROW:
            violations.append(
                FieldViolation("screening.seat_map.seats_per_row", f"must be between 1 and {MAX_SEATS_PER_ROW}")
            )
        if len(set(self.blocked)) != len(self.blocked):
            violations.append(FieldViolation("screening.seat_map.blocked_seats", "must not repeat a seat"))
        for i, seat in enumerate(self.blocked):
            m = _SEAT.match(seat)
            if m is None:
                violations.append(
                    FieldViolation(f"screening.seat_map.blocked_seats[{i}]", "must be a seat label like B7")
                )
            elif not violations and (ord(m["row"]) - ord("A") >= self.rows or int(m["number"]) > self.seats_per_row):
                violations.append(FieldViolation(f"screening.seat_map.blocked_seats[{i}]", "is not a seat of this map"))
        raise_violations("seat map", violations)

    @property
    def capacity(self) -> int:
        return self.rows * self.seats_per_row - len(self.blocked)


@dataclass(frozen=True)
class Money:
    """An amount in minor units (cents) of an ISO 4217 currency."""

    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        violations: list[FieldViolation] = []
        if self.minor_units < 0:
            violations.append(FieldViolation("screening.price.minor_units", "must not be negative"))
        if not _CURRENCY.match(self.currency):
            violations.append(FieldViolation("screening.price.currency_code", "must be an ISO 4217 code like EUR"))
        raise_violations("price", violations)
