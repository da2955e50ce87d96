"""Value objects of the booking context: seat labels, the seat map of a screening, money.

All immutable and validated on construction, so that a `SeatLabel` or a `SeatMap` held
anywhere in the model is known to be well formed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import total_ordering

from services.kit.errors import InvalidArgument

MAX_ROWS = 26  # rows are lettered A..Z
MAX_SEATS_PER_ROW = 99

# No leading zero: "A01" and "A1" would otherwise be two spellings of one seat, and two
# spellings of one seat would slip past the duplicate check and the unique claim.
_SEAT_LABEL = re.compile(r"([A-Z])([1-9][0-9]?)")


@total_ordering
@dataclass(frozen=True, slots=True)
class SeatLabel:
    """One seat of a hall: a row letter and a seat number, written `A1` .. `Z99`."""

    row: str
    number: int

    def __post_init__(self) -> None:
        if len(self.row) != 1 or not ("A" <= self.row <= "Z"):
            raise InvalidArgument.for_field("seat", f"row must be a letter A..Z, got {self.row!r}")
        if not 1 <= self.number <= MAX_SEATS_PER_ROW:
            raise InvalidArgument.for_field("seat", f"seat number must be 1..{MAX_SEATS_PER_ROW}, got {self.number}")

    @classmethod
    def parse(cls, text: str, field_path: str = "seat") -> SeatLabel:
        """Parse `A1`-style text (row letter case-insensitive); InvalidArgument on `field_path` otherwise."""
        match = _SEAT_LABEL.fullmatch(text.upper()) if text.isascii() else None
        if match is None:
            raise InvalidArgument.for_field(field_path, f"{text!r} is not a seat like 'A1' (row A..Z, seat 1..99)")
        return cls(match.group(1), int(match.group(2)))

    @property
    def row_index(self) -> int:
        """1 for row A, 26 for row Z."""
        return ord(self.row) - ord("A") + 1

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SeatLabel):
            return NotImplemented
        return (self.row, self.number) < (other.row, other.number)

    def __str__(self) -> str:
        return f"{self.row}{self.number}"


@dataclass(frozen=True, slots=True)
class SeatMap:
    """The seats of a screening's hall: `rows` x `seats_per_row`, minus the `blocked` ones.

    Blocked seats exist physically (a broken seat, a camera spot) but are never sold.
    An empty map (0 rows) is allowed only so that a tombstone of a screening can be kept.
    """

    rows: int
    seats_per_row: int
    blocked: frozenset[SeatLabel] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0 <= self.rows <= MAX_ROWS:
            raise InvalidArgument.for_field("seat_map.rows", f"must be 0..{MAX_ROWS}, got {self.rows}")
        if not 0 <= self.seats_per_row <= MAX_SEATS_PER_ROW:
            raise InvalidArgument.for_field(
                "seat_map.seats_per_row", f"must be 0..{MAX_SEATS_PER_ROW}, got {self.seats_per_row}"
            )
        outside = sorted(seat for seat in self.blocked if not self.contains(seat))
        if outside:
            raise InvalidArgument.for_field(
                "seat_map.blocked", f"seats outside the map: {', '.join(map(str, outside))}"
            )

    @classmethod
    def of(cls, rows: int, seats_per_row: int, blocked: Iterable[str] = ()) -> SeatMap:
        """Convenience constructor taking blocked seats as text."""
        return cls(rows, seats_per_row, frozenset(SeatLabel.parse(s, "seat_map.blocked") for s in blocked))

    def contains(self, seat: SeatLabel) -> bool:
        """Whether the seat exists in this hall (blocked or not)."""
        return seat.row_index <= self.rows and seat.number <= self.seats_per_row

    def is_bookable(self, seat: SeatLabel) -> bool:
        return self.contains(seat) and seat not in self.blocked

    def all_seats(self) -> Iterator[SeatLabel]:
        """Every seat of the hall, blocked ones included, row by row."""
        for row_index in range(self.rows):
            row = chr(ord("A") + row_index)
            for number in range(1, self.seats_per_row + 1):
                yield SeatLabel(row, number)

    def bookable_seats(self) -> Iterator[SeatLabel]:
        return (seat for seat in self.all_seats() if seat not in self.blocked)

    @property
    def capacity(self) -> int:
        """Seats that can be sold: all of them minus the blocked ones."""
        return self.rows * self.seats_per_row - len(self.blocked)

    def free_count(self, held: Iterable[SeatLabel]) -> int:
        """Bookable seats not in `held` (held seats off the map or blocked are ignored)."""
        return self.capacity - sum(1 for seat in set(held) if self.is_bookable(seat))


_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in the currency's minor unit (cents), never a float."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise InvalidArgument.for_field("amount.amount_minor", "must be an integer number of minor units")
        if self.amount_minor < 0:
            raise InvalidArgument.for_field("amount.amount_minor", f"must not be negative, got {self.amount_minor}")
        if not _CURRENCY.fullmatch(self.currency):
            raise InvalidArgument.for_field("amount.currency", f"must be an ISO 4217 code, got {self.currency!r}")

    def times(self, count: int) -> Money:
        return Money(self.amount_minor * count, self.currency)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount_minor + other.amount_minor, self.currency)
