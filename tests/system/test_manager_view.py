"""The manager's view (issue 16) on the whole local system, through its one address (the ingress):
after a mixed run of bookings, declined cards, cancellations and their refunds, the sales summary
(viewpage's read model, built from events) matches the reservation and payment databases read
directly here, and the list of a screening's reservations (REST twin of ListScreeningReservations)
is the reservation database's, page by page and by state; customers are refused.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from scripts.stack import edge, stores
from tests.browser.stack import CARD, Stack, eventually, scratch_stack

pytestmark = pytest.mark.integration

DECLINED = {**CARD, "number": "4000000000000002"}
PRICE_MINOR = 950
ROWS, PER_ROW, BLOCKED = 6, 8, ["A1", "A2", "F8"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("manager") as running:
        yield running


def call(stack: Stack, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{stack.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
    )


def ok(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, f"{reply.request.method} {reply.request.url}: {reply.status_code} {reply.text}"
    return reply.json()


def new_movie(stack: Stack, manager: str) -> tuple[str, list[str]]:
    """A movie of its own with two screenings (blocked seats in the first), so no other test's
    bookings count in its sales."""
    movie = ok(
        call(
            stack,
            "POST",
            "/v1/movies",
            manager,
            params={"request_id": str(uuid.uuid4())},
            json={"title": f"Sales test {uuid.uuid4().hex[:6]}", "durationMinutes": 100, "genres": ["drama"]},
        )
    )["movie"]
    screenings = []
    for n, blocked in enumerate((BLOCKED, [])):
        start = (datetime.now(UTC) + timedelta(days=3 + n)).replace(microsecond=0).isoformat()
        screening = ok(
            call(
                stack,
                "POST",
                f"/v1/movies/{movie['id']}/screenings",
                manager,
                params={"request_id": str(uuid.uuid4())},
                json={
                    "hall": f"Hall {n + 1}",
                    "startTime": start,
                    "seatMap": {"rows": ROWS, "seatsPerRow": PER_ROW, "blockedSeats": blocked},
                    "price": {"minorUnits": str(PRICE_MINOR), "currencyCode": "EUR"},
                },
            )
        )["screening"]
        screenings.append(screening["id"])
    return movie["id"], screenings


def mixed_run(stack: Stack, customer: str, screenings: list[str]) -> None:
    """Bookings (some in parallel), declined cards, cancellations (each refunded by payment)."""
    free = {sid: [f"{r}{n}" for r in "BCDE" for n in range(1, PER_ROW + 1)] for sid in screenings}
    wanted = []
    for i in range(16):
        sid = screenings[i % 2]
        seats, free[sid] = free[sid][: 1 + i % 3], free[sid][1 + i % 3 :]
        wanted.append((sid, seats, DECLINED if i % 7 == 3 else CARD))

    def book(item: tuple[str, list[str], dict[str, Any]]) -> httpx.Response:
        sid, seats, card = item
        body = {"screeningId": sid, "seats": seats, "requestId": str(uuid.uuid4()), "card": card}
        return call(stack, "POST", "/v1/reservations", customer, json=body)

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(book, wanted))
    confirmed = [r.json()["reservation"]["id"] for r in replies if r.status_code == 200]
    declined = [r for r in replies if r.status_code != 200]
    assert len(declined) == 2 and all(r.status_code == 400 or r.status_code == 412 for r in declined), [
        (r.status_code, r.text) for r in declined
    ]
    assert len(confirmed) == 14
    for reservation_id in random.sample(confirmed, 5):
        ok(call(stack, "POST", f"/v1/reservations/{reservation_id}:cancel", customer, json={"reason": "test"}))


async def store_truth(stack: Stack, screenings: list[str]) -> dict[str, dict[str, int]]:
    """Per screening, what the reservation and payment databases say."""
    pg = stores.PostgresSpec(stack.data / "postgres", stack.port("CINEMA_PG_PORT"))
    truth: dict[str, dict[str, int]] = {}
    booking = await asyncpg.connect(pg.url("reservation"))
    paying = await asyncpg.connect(pg.url("payment"))
    try:
        for sid in screenings:
            rows = await booking.fetch("SELECT id, state, seats FROM reservations WHERE screening_id = $1", sid)
            ids = [row["id"] for row in rows]
            payments = await paying.fetch(
                "SELECT state, amount_minor FROM payments WHERE reservation_id = ANY($1::uuid[])", ids
            )
            truth[sid] = {
                "seats_sold": sum(len(r["seats"]) for r in rows if r["state"] == "CONFIRMED"),
                "confirmed": sum(1 for r in rows if r["state"] == "CONFIRMED"),
                "cancelled": sum(1 for r in rows if r["state"] == "CANCELLED"),
                "revenue": sum(p["amount_minor"] for p in payments if p["state"] in ("APPROVED", "REFUNDED")),
                "refunds": sum(p["amount_minor"] for p in payments if p["state"] == "REFUNDED"),
                "refund_count": sum(1 for p in payments if p["state"] == "REFUNDED"),
            }
    finally:
        await booking.close()
        await paying.close()
    return truth


async def seats_ever_sold(stack: Stack, screenings: list[str]) -> int:
    """Seats of reservations that were confirmed at some point (CONFIRMED now, or CANCELLED after)."""
    pg = stores.PostgresSpec(stack.data / "postgres", stack.port("CINEMA_PG_PORT"))
    conn = await asyncpg.connect(pg.url("reservation"))
    try:
        count = await conn.fetchval(
            "SELECT coalesce(sum(cardinality(seats)), 0) FROM reservations"
            " WHERE screening_id = ANY($1::text[]) AND state IN ('CONFIRMED', 'CANCELLED') AND payment_id IS NOT NULL",
            screenings,
        )
    finally:
        await conn.close()
    return int(count)


def summary_of(sales: dict[str, Any]) -> dict[str, int]:
    return {
        "seats_sold": int(sales.get("seatsSold", 0)),
        "confirmed": int(sales.get("reservationsConfirmed", 0)),
        "cancelled": int(sales.get("cancellations", 0)),
        "revenue": int(sales.get("revenue", {}).get("minorUnits", 0)),
        "refunds": int(sales.get("refunds", {}).get("minorUnits", 0)),
        "refund_count": int(sales.get("refundCount", 0)),
    }


def test_after_a_mixed_run_the_sales_match_the_reservation_and_payment_databases(stack: Stack) -> None:
    manager, customer = stack.token(edge.DEMO_MANAGER), stack.token(edge.DEMO_CUSTOMER)
    movie_id, screenings = new_movie(stack, manager)
    eventually(
        "the new screenings reach booking",
        lambda: all(
            httpx.get(f"{stack.base}/v1/screenings/{sid}/availability", timeout=30).status_code == 200
            for sid in screenings
        ),
    )
    mixed_run(stack, customer, screenings)

    def settled() -> dict[str, Any] | None:
        truth = asyncio.run(store_truth(stack, screenings))
        if sum(t["refund_count"] for t in truth.values()) < 5:
            return None  # payment is still refunding (the saga is asynchronous)
        answer = ok(call(stack, "GET", f"/v1/sales/movies/{movie_id}", manager))
        by_screening = {s["screeningId"]: summary_of(s["sales"]) for s in answer["screenings"]}
        return answer if by_screening == truth else None

    answer = eventually("the sales to match the stores", settled, timeout=60)
    truth = asyncio.run(store_truth(stack, screenings))
    total = answer["sales"]
    assert summary_of(total) == {key: sum(t[key] for t in truth.values()) for key in truth[screenings[0]]}
    assert total["revenue"]["currencyCode"] == "EUR"
    assert int(total["netRevenue"]["minorUnits"]) == sum(t["revenue"] - t["refunds"] for t in truth.values())
    first = next(s for s in answer["screenings"] if s["screeningId"] == screenings[0])["sales"]
    assert int(first["seatsBlocked"]) == len(BLOCKED)
    sold_first = truth[screenings[0]]["seats_sold"]
    assert int(first["seatsFree"]) == ROWS * PER_ROW - len(BLOCKED) - sold_first
    # Over time: every seat that was sold (the cancelled ones too, they were sold once), all the
    # money taken and given back, hour by hour.
    ever_sold = asyncio.run(seats_ever_sold(stack, screenings))
    assert sum(int(p.get("seatsSold", 0)) for p in total["timeline"]) == ever_sold
    assert (
        sum(int(p.get("revenue", {}).get("minorUnits", 0)) for p in total["timeline"]) == summary_of(total)["revenue"]
    )
    assert (
        sum(int(p.get("refunds", {}).get("minorUnits", 0)) for p in total["timeline"]) == summary_of(total)["refunds"]
    )
    one = ok(call(stack, "GET", f"/v1/sales/screenings/{screenings[1]}", manager))
    assert summary_of(one["screening"]["sales"]) == truth[screenings[1]]

    # The list of a screening's reservations (REST twin), page by page and by state.
    pg = stores.PostgresSpec(stack.data / "postgres", stack.port("CINEMA_PG_PORT"))

    async def booked(sid: str) -> list[tuple[str, str]]:
        conn = await asyncpg.connect(pg.url("reservation"))
        try:
            rows = await conn.fetch(
                "SELECT id, state FROM reservations WHERE screening_id = $1 ORDER BY created_at DESC, id DESC", sid
            )
        finally:
            await conn.close()
        return [(str(r["id"]), r["state"]) for r in rows]

    for sid in screenings:
        expected = asyncio.run(booked(sid))
        listed: list[dict[str, Any]] = []
        token = ""
        while True:
            page = ok(
                call(
                    stack,
                    "GET",
                    f"/v1/screenings/{sid}/reservations",
                    manager,
                    params={"page_size": 3, "page_token": token},
                )
            )
            listed += page.get("reservations", [])
            token = page.get("nextPageToken", "")
            if not token:
                break
        assert [(r["id"], r["state"].removeprefix("RESERVATION_STATE_")) for r in listed] == expected
        cancelled = ok(
            call(
                stack,
                "GET",
                f"/v1/screenings/{sid}/reservations",
                manager,
                params={"state": "RESERVATION_STATE_CANCELLED"},
            )
        ).get("reservations", [])
        assert [r["id"] for r in cancelled] == [rid for rid, state in expected if state == "CANCELLED"]

    # Customers are refused, with the API's status body; without a token the edge refuses.
    for path in (f"/v1/sales/movies/{movie_id}", f"/v1/screenings/{screenings[0]}/reservations"):
        refused = call(stack, "GET", path, customer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == 7
        assert httpx.get(f"{stack.base}{path}", timeout=30).status_code == 401
    assert call(stack, "GET", f"/v1/sales/movies/{uuid.uuid4()}", manager).status_code == 404
    assert call(stack, "GET", f"/v1/screenings/{uuid.uuid4()}/reservations", manager).status_code == 404
