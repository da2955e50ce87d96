"""The booking core under concurrency and faults, as real processes on real stores.

Every test ends by checking the invariants of DESIGN.md against the two databases
themselves (not through the APIs): a seat is held by at most one active reservation, a
reservation is CONFIRMED exactly when its payment is APPROVED, and an approved payment
always has a standing reservation (or was refunded).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from nats.aio.client import Client as NATS

from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2
from services.kit.events import envelope as env
from services.kit.grpc_errors import find_detail, retry_delay_s
from tests.system.conftest import BookingSystem

pytestmark = pytest.mark.integration

APPROVE = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000009995"
STATE = reservation_pb2.ReservationState


def card(number: str = APPROVE) -> Card:
    return Card(number=number, expiry_month=12, expiry_year=2035, cvc="123")


def create_request(
    screening_id: str, seats: list[str], number: str = APPROVE
) -> reservation_pb2.CreateReservationRequest:
    return reservation_pb2.CreateReservationRequest(
        screening_id=screening_id, seats=seats, request_id=str(uuid.uuid4()), card=card(number)
    )


async def honouring_retry_hints(call: Any, request: Any, metadata: Any, attempts: int = 40) -> Any:
    """Send `request`; on UNAVAILABLE with a retry hint, the same request again after the hint."""
    for _ in range(attempts - 1):
        try:
            return await call(request, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as err:
            delay = retry_delay_s(err)
            if delay is None:
                raise
            await asyncio.sleep(delay)
    return await call(request, metadata=metadata, timeout=30)


async def settle(system: BookingSystem, within_s: float = 20.0) -> None:
    """Wait until no reservation is PENDING (the reconciler has run) and the outboxes drained."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pending = await fetchval(system.reservation_db, "SELECT count(*) FROM reservations WHERE state = 'PENDING'")
        r_out = await fetchval(system.reservation_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        p_out = await fetchval(system.payment_db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        if pending == 0 and r_out == 0 and p_out == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not settled within {within_s} s: pending={pending} outboxes={r_out}/{p_out}")


async def fetchval(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def check_invariants(system: BookingSystem) -> dict[str, int]:
    """The invariants of DESIGN.md, read from the stores. Returns counts for the caller."""
    reservations = await fetch(system.reservation_db, "SELECT id::text, state, seats, screening_id FROM reservations")
    claims = await fetch(system.reservation_db, "SELECT screening_id, seat, reservation_id::text FROM seat_claims")
    payments = await fetch(system.payment_db, "SELECT reservation_id::text, state FROM payments")
    by_id = {r["id"]: r for r in reservations}

    # A seat is held by at most one active reservation (the primary key makes a second row
    # impossible); every claim belongs to an active reservation, and every active one holds
    # exactly its seats.
    assert len({(c["screening_id"], c["seat"]) for c in claims}) == len(claims)
    held: dict[str, set[str]] = {}
    for c in claims:
        assert by_id[c["reservation_id"]]["state"] in ("PENDING", "CONFIRMED"), f"seat held by {c}"
        held.setdefault(c["reservation_id"], set()).add(c["seat"])
    for r in reservations:
        if r["state"] in ("PENDING", "CONFIRMED"):
            assert held.get(r["id"], set()) == set(r["seats"]), f"reservation {r['id']} does not hold its seats"

    # CONFIRMED exactly when APPROVED; an approved payment never without a standing reservation.
    payment_state = {p["reservation_id"]: p["state"] for p in payments}
    confirmed = {r["id"] for r in reservations if r["state"] == "CONFIRMED"}
    approved = {rid for rid, state in payment_state.items() if state == "APPROVED"}
    assert confirmed == approved, (
        f"confirmed-not-approved={confirmed - approved} approved-not-confirmed={approved - confirmed}"
    )
    for rid, state in payment_state.items():
        if state == "REFUNDED":
            assert by_id[rid]["state"] in ("CANCELLED", "FAILED"), f"refunded payment of a standing reservation {rid}"
    return {
        "confirmed": len(confirmed),
        "seats_held": len(claims),
        "payments": len(payments),
        "refunded": sum(1 for s in payment_state.values() if s == "REFUNDED"),
    }


async def test_200_customers_race_for_the_50_seats_of_one_screening(booking: BookingSystem) -> None:
    screening_id = await booking.publish_screening(rows=5, seats_per_row=10)
    all_seats = [f"{row}{n}" for row in "ABCDE" for n in range(1, 11)]
    outcomes: Counter[str] = Counter()

    async def customer(i: int) -> None:
        metadata = booking.identity.customer(f"racer-{i}")
        number = INSUFFICIENT_FUNDS if i % 10 == 0 else APPROVE  # one customer in ten is declined
        rng = random.Random(i)
        for _ in range(60):
            availability = await honouring_retry_hints(
                booking.reservations.GetSeatAvailability,
                reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id),
                metadata,
            )
            free = sorted(set(all_seats) - set(availability.taken_seats))
            if not free:
                outcomes["sold out"] += 1
                return
            seats = rng.sample(free, k=min(len(free), rng.choice((1, 1, 2))))
            try:
                # Past its capacity the service refuses at once with a retry hint: a client sends
                # the same request (same request id) again after the hint, as people's apps do.
                reply = await honouring_retry_hints(
                    booking.reservations.CreateReservation, create_request(screening_id, seats, number), metadata
                )
            except grpc.aio.AioRpcError as err:
                info = find_detail(err, error_details_pb2.ErrorInfo)
                reason = info.reason if info else ""
                if err.code() == grpc.StatusCode.FAILED_PRECONDITION and "TAKEN" in reason:
                    outcomes["seat taken, retried"] += 1
                    continue
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
                outcomes[f"declined ({reason})"] += 1
                return
            assert reply.reservation.state == STATE.RESERVATION_STATE_CONFIRMED
            outcomes["confirmed"] += 1
            return
        outcomes["gave up"] += 1

    started = time.monotonic()
    await asyncio.gather(*(customer(i) for i in range(200)))
    elapsed = time.monotonic() - started
    await settle(booking)
    counts = await check_invariants(booking)
    seats_sold = await fetchval(
        booking.reservation_db,
        "SELECT count(*) FROM seat_claims c JOIN reservations r ON r.id = c.reservation_id "
        "WHERE r.state = 'CONFIRMED' AND c.screening_id = $1",
        screening_id,
    )
    print(f"\n200 customers, 50 seats: {dict(outcomes)} in {elapsed:.1f} s; {counts}")
    assert seats_sold == 50
    assert outcomes["gave up"] == 0
    declined = await fetchval(
        booking.reservation_db,
        "SELECT count(*) FROM reservations WHERE state = 'FAILED' AND screening_id = $1",
        screening_id,
    )
    assert declined == sum(n for k, n in outcomes.items() if k.startswith("declined"))


async def test_payment_down_fails_fast_then_the_same_request_gets_its_reservation(booking: BookingSystem) -> None:
    screening_id = await booking.publish_screening()
    metadata = booking.identity.customer("alice")
    request = create_request(screening_id, ["A1", "A2"])
    booking.payment.kill()
    try:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await booking.reservations.CreateReservation(request, metadata=metadata, timeout=30)
        took = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        retry = find_detail(caught.value, error_details_pb2.RetryInfo)
        assert retry is not None and retry.retry_delay.ToTimedelta().total_seconds() > 0
        assert took < 1.0, f"UNAVAILABLE took {took:.2f} s"
    finally:
        booking.payment.start()

    # Back up, inside the outage window: the seats stayed held, reservation's own authorization
    # asked payment again, and a retry with the same request id gets the reservation (the
    # contract: retry UNAVAILABLE with the same request id after the hint).
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = await booking.reservations.CreateReservation(request, metadata=metadata, timeout=30)
            break
        except grpc.aio.AioRpcError as err:
            if time.monotonic() > deadline or err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.25)
    assert reply.reservation.state == STATE.RESERVATION_STATE_CONFIRMED
    await settle(booking)
    await check_invariants(booking)


async def test_reservation_killed_between_approval_and_commit_is_confirmed_once(booking: BookingSystem) -> None:
    screening_id = await booking.publish_screening()
    metadata = booking.identity.customer("bob")
    request = create_request(screening_id, ["C3"])

    # Hold the reservation service's commit: its confirmation writes to the outbox, which we
    # lock, so it stops right after payment approved.
    blocker = await asyncpg.connect(booking.reservation_db)
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE outbox IN EXCLUSIVE MODE")
    call = asyncio.ensure_future(booking.reservations.CreateReservation(request, metadata=metadata, timeout=30))
    try:
        for _ in range(200):
            approved = await fetchval(
                booking.payment_db, "SELECT count(*) FROM payments WHERE customer_id = 'bob' AND state = 'APPROVED'"
            )
            if approved:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("payment never approved")
        booking.reservation.kill()  # between payment approval and the commit
    finally:
        await tx.rollback()
        await blocker.close()
    with pytest.raises(grpc.aio.AioRpcError):
        await call

    booking.reservation.start()
    await settle(booking)
    rows = await fetch(booking.reservation_db, "SELECT id::text, state FROM reservations WHERE customer_id = 'bob'")
    assert [r["state"] for r in rows] == ["CONFIRMED"]
    # The customer retries with the same request id: the same reservation, no second charge.
    again = await booking.reservations.CreateReservation(request, metadata=metadata, timeout=30)
    assert again.reservation.id == rows[0]["id"] and again.reservation.state == STATE.RESERVATION_STATE_CONFIRMED
    assert await fetchval(booking.payment_db, "SELECT count(*) FROM payments WHERE customer_id = 'bob'") == 1
    await check_invariants(booking)


async def test_cancel_while_payment_is_down_then_refund_once(booking: BookingSystem) -> None:
    screening_id = await booking.publish_screening()
    metadata = booking.identity.customer("carol")
    created = await booking.reservations.CreateReservation(
        create_request(screening_id, ["D4", "D5"]), metadata=metadata, timeout=30
    )
    rid = created.reservation.id

    booking.payment.kill()
    try:
        started = time.monotonic()
        cancelled = await booking.reservations.CancelReservation(
            reservation_pb2.CancelReservationRequest(reservation_id=rid, reason="plans changed"),
            metadata=metadata,
            timeout=30,
        )
        assert time.monotonic() - started < 1.0
        assert cancelled.reservation.state == STATE.RESERVATION_STATE_CANCELLED
        availability = await booking.reservations.GetSeatAvailability(
            reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id), metadata=metadata, timeout=30
        )
        assert not {"D4", "D5"} & set(availability.taken_seats)  # free at once
        await asyncio.sleep(1.0)
        assert (
            await fetchval(booking.payment_db, "SELECT state FROM payments WHERE reservation_id = $1", rid)
            == "APPROVED"
        )
    finally:
        booking.payment.start()

    for _ in range(200):
        if (
            await fetchval(booking.payment_db, "SELECT state FROM payments WHERE reservation_id = $1", rid)
            == "REFUNDED"
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the refund never happened")
    await settle(booking)
    refunds = await fetchval(
        booking.payment_db,
        "SELECT count(*) FROM outbox WHERE event_type = 'cinema.payment.v1.PaymentRefunded' AND aggregate_id IN "
        "(SELECT id::text FROM payments WHERE reservation_id = $1)",
        rid,
    )
    assert refunds == 1
    await check_invariants(booking)


async def test_relay_killed_mid_stream_loses_no_event_and_publishes_none_twice(booking: BookingSystem) -> None:
    screening_id = await booking.publish_screening(rows=10, seats_per_row=10)
    seats = [f"{row}{n}" for row in "ABCDEFGHIJ" for n in range(1, 11)]

    async def reserve(i: int) -> None:
        # The process dies under some of them; what was committed is what counts.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await booking.reservations.CreateReservation(
                create_request(screening_id, [seats[i]]), metadata=booking.identity.customer(f"relay-{i}"), timeout=30
            )

    tasks = [asyncio.ensure_future(reserve(i)) for i in range(100)]
    await asyncio.sleep(0.4)
    booking.reservation.kill()  # the relay runs inside the reservation process
    await asyncio.gather(*tasks)
    booking.reservation.start()
    # a reservation whose process died before it asked payment, and whose customer does not come
    # back, is failed by the reconciler at the end of the pending window (38.6 s after its claim)
    await settle(booking, within_s=90)
    await check_invariants(booking)

    committed = {
        r["event_id"]
        for r in await fetch(
            booking.reservation_db,
            "SELECT event_id::text FROM outbox WHERE event_type = 'cinema.reservation.v1.ReservationConfirmed'",
        )
    }
    confirmed_here = await fetchval(
        booking.reservation_db,
        "SELECT count(*) FROM reservations WHERE state = 'CONFIRMED' AND screening_id = $1",
        screening_id,
    )
    assert isinstance(confirmed_here, int) and confirmed_here > 0

    nc = NATS()
    await nc.connect(booking.nats.url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("cinema.reservation.confirmed", durable=f"relay-check-{uuid.uuid4().hex[:6]}")
        seen: list[str] = []
        while True:
            try:
                msgs = await sub.fetch(200, timeout=2)
            except TimeoutError:
                break
            for m in msgs:
                seen.append(env.decode(m.data).id)
                await m.ack()
    finally:
        await nc.close()
    assert len(seen) == len(set(seen)), "an event reached the stream twice"
    assert committed <= set(seen), f"{len(committed - set(seen))} committed events never reached JetStream"
