#!/usr/bin/env python3
"""Try the running system (`make up`) as the demo customer: see a screening's free seats,
reserve two, list your reservations, cancel. Uses the generated gRPC client and a
development token from `.data/auth` (the identity service will issue real ones).

    .venv/bin/python scripts/try_booking.py
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc

from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.stack import components
from scripts.stack.devauth import DevIssuer
from scripts.stack.paths import DATA
from scripts.stack.seed import seed_demo_catalog


async def main() -> int:
    nats_url = next(c.url for c in components.local_components() if c.name == "nats")
    title, screening_id, starts = (await seed_demo_catalog(nats_url))[0]
    token = DevIssuer(DATA / "auth").mint("demo-customer", {"customer"}, ttl_s=600, email="demo@cinema.test")
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{components.RESERVATION_PORT}") as channel:
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)
        seats = await stub.GetSeatAvailability(
            reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id), metadata=metadata, timeout=5
        )
        print(
            f"{title} at {starts:%a %d %b %H:%M}: {seats.free_seat_count}/{seats.total_seat_count} seats free, "
            f"{seats.price.minor_units / 100:.2f} {seats.price.currency_code} each"
        )
        taken = set(seats.taken_seats)
        wanted = [s for s in (f"{r}{n}" for r in "DEFGH" for n in range(5, 13)) if s not in taken][:2]
        created = await stub.CreateReservation(
            reservation_pb2.CreateReservationRequest(
                screening_id=screening_id,
                seats=wanted,
                request_id=str(uuid.uuid4()),
                card=Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123"),
            ),
            metadata=metadata,
            timeout=5,
        )
        r = created.reservation
        print(
            f"reserved {', '.join(r.seats)}: {reservation_pb2.ReservationState.Name(r.state)}, "
            f"{r.amount.minor_units / 100:.2f} {r.amount.currency_code}, reservation {r.id}"
        )
        mine = await stub.ListReservations(reservation_pb2.ListReservationsRequest(page_size=5), metadata=metadata)
        print(
            f"your latest reservations: {[reservation_pb2.ReservationState.Name(x.state) for x in mine.reservations]}"
        )
        cancelled = await stub.CancelReservation(
            reservation_pb2.CancelReservationRequest(reservation_id=r.id, reason="just trying"), metadata=metadata
        )
        print(
            f"cancelled: {reservation_pb2.ReservationState.Name(cancelled.reservation.state)} "
            "(payment refunds it when it sees ReservationCancelled)"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except grpc.aio.AioRpcError as err:
        print(f"{err.code().name}: {err.details()}  (is `make up` running? `make status` tells)", file=sys.stderr)
        sys.exit(1)
