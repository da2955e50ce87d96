"""The manager's view of booking: the reservations of one screening (who booked which seats).

A read-only query (the read side of Cosmic Python's `views.py`): it goes through its own port,
`ScreeningReservationsView`, not through the repository and unit of work, because it changes
nothing and locks nothing. Managers only: a customer is refused with PERMISSION_DENIED, since
the list names other customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.kit.errors import InvalidArgument, NotFound, PermissionDenied
from services.reservation.domain.reservation import ReservationState
from services.reservation.service_layer.commands import Caller
from services.reservation.service_layer.ports import ReservationPage


class ScreeningReservationsView(Protocol):
    """The reservations of a screening as booking stores them (read-only)."""

    async def screening_known(self, screening_id: str) -> bool:
        """Whether the replica holds the screening (a tombstone alone does not count)."""
        ...

    async def list_for_screening(
        self, screening_id: str, state: ReservationState | None, page_size: int, page_token: str
    ) -> ReservationPage:
        """Newest first (created_at desc, then id), only `state` when given. `page_token` is ""
        or a token this method returned; any other raises InvalidArgument (field `page_token`)."""
        ...


@dataclass(frozen=True)
class ListScreeningReservations:
    caller: Caller
    screening_id: str
    state: ReservationState | None = None  # None: every state
    page_size: int = 0  # 0: the default size
    page_token: str = ""


async def list_screening_reservations(
    query: ListScreeningReservations,
    view: ScreeningReservationsView,
    *,
    default_page_size: int = 50,
    max_page_size: int = 100,
) -> ReservationPage:
    """One page of a screening's reservations, newest first, for a manager."""
    if not query.caller.is_manager:
        raise PermissionDenied("only a manager may list the reservations of a screening")
    if query.page_size < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    page_size = min(query.page_size or default_page_size, max_page_size)
    if not await view.screening_known(query.screening_id):
        raise NotFound("screening", query.screening_id)
    return await view.list_for_screening(query.screening_id, query.state, page_size, query.page_token)
