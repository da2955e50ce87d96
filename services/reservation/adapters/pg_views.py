"""Read-only queries on the booking database for the manager's view (no unit of work, no locks).

Implements services.reservation.service_layer.manager_view.ScreeningReservationsView with the
repository's row mapping and keyset page tokens, so a reservation reads the same here as in
GetReservation, and a token of one list is a position in the (created_at, id) order like the others.
"""

from __future__ import annotations

import asyncpg

from services.reservation.adapters.postgres import (
    _SELECT_RESERVATION,
    _reservation_from,
    decode_page_token,
    encode_page_token,
)
from services.reservation.domain.reservation import ReservationState
from services.reservation.service_layer.ports import ReservationPage


class PgScreeningReservations:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def screening_known(self, screening_id: str) -> bool:
        found = await self._pool.fetchval("SELECT 1 FROM screenings WHERE id = $1 AND movie_id <> ''", screening_id)
        return found is not None

    async def list_for_screening(
        self, screening_id: str, state: ReservationState | None, page_size: int, page_token: str
    ) -> ReservationPage:
        conditions = ["r.screening_id = $1"]
        args: list[object] = [screening_id]
        if state is not None:
            args.append(state.value)
            conditions.append(f"r.state = ${len(args)}")
        if page_token:
            created_at, after_id = decode_page_token(page_token)
            args += [created_at, after_id]
            conditions.append(f"(r.created_at, r.id) < (${len(args) - 1}, ${len(args)})")
        args.append(page_size + 1)
        sql = (
            _SELECT_RESERVATION
            + " WHERE "
            + " AND ".join(conditions)
            + f" ORDER BY r.created_at DESC, r.id DESC LIMIT ${len(args)}"
        )
        rows = await self._pool.fetch(sql, *args)
        page = [_reservation_from(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        token = encode_page_token(page[-1].created_at, page[-1].id) if more and page else ""
        return ReservationPage(page, token)
