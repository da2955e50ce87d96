"""The invariants of the stores, read from the stores themselves after a fuzz run.

Bad input must never leave a partial write behind: a state change without its event, a seat
held twice or by a reservation that does not stand, a reservation without its seats, a second
standing review by one customer of one movie, two screenings sharing a hall at once; and no
client input may put an event in the dead-letter stream. These checks read PostgreSQL, MongoDB
and JetStream directly (never through the APIs under test) and return a
list of the problems found, so the test can wait for the asynchronous parts (outbox relays,
consumers) to settle before it reports.

The reservation/payment checks follow tests/system/test_booking_core.py, with one difference:
the fuzzer calls PaymentService.AuthorizePayment directly as a service, for reservation ids
that the reservation service never made. Those payments are the caller's business (as they
would be for any other service allowed to call payment), so the payment-to-reservation
direction is checked only for payments whose reservation exists.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient

from services.kit.events.naming import DEAD_LETTER_STREAM
from tests.fuzz.system import FuzzSystem

ACTIVE = ("PENDING", "CONFIRMED")
CLEANING_GAP = timedelta(minutes=15)  # the movie service's default (MOVIE_CLEANING_GAP_MINUTES)
ROW_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _on_map(seat: str, rows: int, per_row: int) -> bool:
    if len(seat) < 2 or seat[0] not in ROW_LETTERS[:rows] or not seat[1:].isdigit():
        return False
    return 1 <= int(seat[1:]) <= per_row


async def booking_problems(system: FuzzSystem) -> list[str]:
    problems: list[str] = []
    reservations = await _fetch(
        system.reservation_db,
        "SELECT id::text, customer_id, state, seats, screening_id, amount_minor, currency FROM reservations",
    )
    claims = await _fetch(system.reservation_db, "SELECT screening_id, seat, reservation_id::text FROM seat_claims")
    screenings = {
        row["id"]: row
        for row in await _fetch(
            system.reservation_db,
            "SELECT id, hall, starts_at, seat_rows, seats_per_row, blocked_seats, price_minor, currency, status "
            "FROM screenings",
        )
    }
    events = await _fetch(system.reservation_db, "SELECT event_type, aggregate_id FROM outbox")
    payments = await _fetch(
        system.payment_db,
        "SELECT id::text, reservation_id::text, customer_id, state, amount_minor, currency FROM payments",
    )
    payment_events = await _fetch(system.payment_db, "SELECT event_type, aggregate_id FROM outbox")
    by_id = {r["id"]: r for r in reservations}

    held: dict[str, set[str]] = defaultdict(set)
    for (screening_id, seat), n in Counter((c["screening_id"], c["seat"]) for c in claims).items():
        if n > 1:
            problems.append(f"seat {seat} of screening {screening_id} is held {n} times")
    for claim in claims:
        owner = by_id.get(claim["reservation_id"])
        if owner is None or owner["state"] not in ACTIVE:
            problems.append(f"seat claim {dict(claim)} belongs to no standing reservation")
        held[claim["reservation_id"]].add(claim["seat"])

    event_types = defaultdict(set)
    for event in events:
        event_types[event["aggregate_id"]].add(event["event_type"].rsplit(".", 1)[-1])
    for r in reservations:
        seats = list(r["seats"])
        if r["state"] == "PENDING":
            problems.append(f"reservation {r['id']} still PENDING after the run settled")
        if r["state"] in ACTIVE:
            if held.get(r["id"], set()) != set(seats):
                problems.append(f"reservation {r['id']} ({r['state']}) holds {held.get(r['id'])} for seats {seats}")
            if not 1 <= len(seats) <= 10 or len(set(seats)) != len(seats):
                problems.append(f"reservation {r['id']} has seats {seats}")
            screening = screenings.get(r["screening_id"])
            if screening is None:
                problems.append(f"reservation {r['id']} is for screening {r['screening_id']} the replica never had")
            else:
                blocked = set(screening["blocked_seats"])
                off = [
                    s
                    for s in seats
                    if s in blocked or not _on_map(s, screening["seat_rows"], screening["seats_per_row"])
                ]
                if off:
                    problems.append(f"reservation {r['id']} holds seats off the map or blocked: {off}")
                expected = screening["price_minor"] * len(seats)
                if (r["amount_minor"], r["currency"]) != (expected, screening["currency"]):
                    problems.append(f"reservation {r['id']} costs {r['amount_minor']} {r['currency']}, not {expected}")
        # A state reached without its event would be a partial write.
        wanted = {"CONFIRMED": "ReservationConfirmed", "CANCELLED": "ReservationCancelled"}.get(r["state"])
        if wanted is not None and wanted not in event_types.get(r["id"], set()):
            problems.append(f"reservation {r['id']} is {r['state']} without a {wanted} event in its outbox")

    payment_of = {p["reservation_id"]: p for p in payments}
    for r in reservations:
        if r["state"] != "CONFIRMED":
            continue
        p = payment_of.get(r["id"])
        if p is None or p["state"] != "APPROVED":
            problems.append(f"reservation {r['id']} is CONFIRMED but its payment is {p and p['state']}")
        elif (p["amount_minor"], p["currency"], p["customer_id"]) != (
            r["amount_minor"],
            r["currency"],
            r["customer_id"],
        ):
            problems.append(f"reservation {r['id']} and its payment {p['id']} disagree on amount or customer")
    payment_event_types = defaultdict(set)
    for event in payment_events:
        payment_event_types[event["aggregate_id"]].add(event["event_type"])
    for p in payments:
        if not payment_event_types.get(p["id"]):
            problems.append(f"payment {p['id']} ({p['state']}) has no event in its outbox")
        r = by_id.get(p["reservation_id"])
        if r is None:
            continue  # authorized directly by a service caller (see the module docstring)
        if p["state"] == "APPROVED" and r["state"] != "CONFIRMED":
            problems.append(f"payment {p['id']} is APPROVED for reservation {r['id']} that is {r['state']}")
        if p["state"] == "REFUNDED" and r["state"] not in ("CANCELLED", "FAILED"):
            problems.append(f"payment {p['id']} was refunded for reservation {r['id']} that is {r['state']}")
    return problems


async def catalog_problems(system: FuzzSystem) -> list[str]:
    """Movie and review (MongoDB), and what the reservation replica and the review counts learned
    of them through events."""
    problems: list[str] = []
    client: AsyncMongoClient[Mapping[str, Any]] = AsyncMongoClient(system.mongo_url)
    try:
        movies_db = client[system.movie_database]
        movies = {doc["_id"]: doc async for doc in movies_db["movies"].find({})}
        screenings = [doc async for doc in movies_db["screenings"].find({})]
        reviews = [doc async for doc in client[system.review_database]["reviews"].find({})]
    finally:
        await client.close()

    for movie in movies.values():
        if movie.get("deleted"):
            continue
        title, duration, genres = movie["title"], movie["duration_minutes"], list(movie.get("genres", []))
        if not 1 <= len(title) <= 200 or not 1 <= duration <= 600:
            problems.append(f"movie {movie['_id']} stored with title {title[:50]!r} and duration {duration}")
        if len(genres) > 10 or len(set(genres)) != len(genres) or any(not 1 <= len(g) <= 40 for g in genres):
            problems.append(f"movie {movie['_id']} stored with genres {genres[:12]}")

    scheduled = [s for s in screenings if s["state"] == "SCHEDULED"]
    by_hall: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for s in scheduled:
        start = _aware(s["starts_at"])
        by_hall[s["hall"]].append((start, start + timedelta(minutes=s["duration_minutes"]) + CLEANING_GAP, s["_id"]))
        seat_map, price = s["seat_map"], s["price"]
        if not (1 <= seat_map["rows"] <= 26 and 1 <= seat_map["seats_per_row"] <= 99 and price["minor_units"] >= 0):
            problems.append(f"screening {s['_id']} stored with seat map {seat_map} and price {price}")
        if s["movie_id"] not in movies:
            problems.append(f"screening {s['_id']} is of movie {s['movie_id']} that does not exist")
    for hall, slots in by_hall.items():
        slots.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(slots):
            if start < end:
                problems.append(f"screenings {first} and {second} overlap in hall {hall!r}")

    replica = {
        row["id"]: row
        for row in await _fetch(system.reservation_db, "SELECT id, hall, starts_at, status FROM screenings")
    }
    for s in screenings:
        if s["state"] not in ("SCHEDULED", "CANCELLED"):
            continue
        copy = replica.get(s["_id"])
        stored = (s["state"], s["hall"], _aware(s["starts_at"]))
        if copy is None or (copy["status"], copy["hall"], copy["starts_at"]) != stored:
            problems.append(f"the reservation replica has {copy and dict(copy)} for screening {s['_id']} {stored}")

    standing = [r for r in reviews if r.get("state") == "posted"]
    for key, n in Counter((r["movie_id"], r["customer_id"]) for r in standing).items():
        if n > 1:
            problems.append(f"customer {key[1]} has {n} standing reviews of movie {key[0]}")
    for r in standing:
        if not 1 <= r["rating"] <= 5 or len(r.get("text", "")) > 2000:
            problems.append(f"review {r['_id']} stored with rating {r['rating']} and {len(r.get('text', ''))} chars")
    counts = Counter(r["movie_id"] for r in standing)
    for movie_id, movie in movies.items():
        if not movie.get("deleted") and movie.get("review_count", 0) != counts.get(movie_id, 0):
            problems.append(
                f"movie {movie_id} counts {movie.get('review_count')} reviews, {counts.get(movie_id, 0)} stand"
            )
    return problems


async def notification_problems(system: FuzzSystem) -> list[str]:
    rows = await _fetch(
        system.notification_db,
        "SELECT id::text, event_id::text, event_type, state, recipient, last_error FROM notifications",
    )
    problems = [f"event {e} notified {n} times" for e, n in Counter(r["event_id"] for r in rows).items() if n > 1]
    # PARKED is a designed outcome (e.g. NO_RECIPIENT for a reservation a manager made, whose token
    # carries no e-mail address), never a silent one: it must say why.
    problems += [
        f"notification {r['id']} of {r['event_type']} to {r['recipient']!r} is {r['state']}: {r['last_error']!r}"
        for r in rows
        if r["state"] not in ("PENDING", "SENT", "PARKED") or (r["state"] == "PARKED" and not r["last_error"])
    ]
    return problems


async def dead_letter_problems(system: FuzzSystem) -> list[str]:
    """The dead-letter stream is empty: nothing a client sent made an event no consumer could
    handle (an event that can never apply is set aside, not dead-lettered; review refuses reviews
    of movies that do not exist)."""
    if not system.nats_url:
        return []
    nc = NATS()
    await nc.connect(system.nats_url, connect_timeout=5)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(DEAD_LETTER_STREAM)
        except NotFoundError:
            return []
        parked = info.state.messages
        if not parked:
            return []
        sample = await js.get_msg(DEAD_LETTER_STREAM, info.state.first_seq)
        why = (sample.headers or {}).get("Cinema-Dead-Letter-Error", "")
        return [f"{parked} event(s) in {DEAD_LETTER_STREAM}, the first: {sample.subject}: {why}"]
    finally:
        await nc.close()


async def all_problems(system: FuzzSystem) -> list[str]:
    return [
        *(await booking_problems(system)),
        *(await catalog_problems(system)),
        *(await notification_problems(system)),
        *(await dead_letter_problems(system)),
    ]
