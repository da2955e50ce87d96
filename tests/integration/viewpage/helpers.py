"""Builders shared by the viewpage integration tests: events of every context, publishing, waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.client import JetStreamContext

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie
from cinema.payment.v1 import events_pb2 as payment
from cinema.reservation.v1 import events_pb2 as reservation
from cinema.review.v1 import events_pb2 as review
from services.kit.events import envelope as env
from services.kit.events import jetstream

TOMORROW = datetime.now(UTC) + timedelta(days=1)


def new_id() -> str:
    return str(uuid.uuid4())


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def wrap(event: Message, aggregate_id: str, version: int, context: str, time: datetime | None = None) -> EventEnvelope:
    return env.wrap(
        event,
        source=f"cinema/{context}",
        subject=aggregate_id,
        aggregate_id=aggregate_id,
        aggregate_version=version,
        time=time,
    )


def movie_registered(movie_id: str, title: str = "Metropolis", genres: Iterable[str] = ("drama",)) -> EventEnvelope:
    event = movie.MovieRegistered(
        movie_id=movie_id, title=title, genres=list(genres), duration_minutes=153, poster_url="https://p/x.png"
    )
    return wrap(event, movie_id, 1, "movie")


def movie_updated(movie_id: str, version: int, title: str) -> EventEnvelope:
    event = movie.MovieUpdated(movie_id=movie_id, title=title, genres=["drama"], duration_minutes=150)
    return wrap(event, movie_id, version, "movie")


def movie_deleted(movie_id: str, version: int) -> EventEnvelope:
    return wrap(movie.MovieDeleted(movie_id=movie_id, title="x"), movie_id, version, "movie")


def screening_scheduled(
    screening_id: str,
    movie_id: str,
    *,
    rows: int = 10,
    per_row: int = 10,
    hall: str = "Hall 1",
    start: datetime = TOMORROW,
    title: str = "Metropolis",
) -> EventEnvelope:
    event = movie.ScreeningScheduled(
        screening_id=screening_id,
        movie_id=movie_id,
        movie_title=title,
        duration_minutes=153,
        hall=hall,
        start_time=_ts(start),
        seat_map=SeatMap(rows=rows, seats_per_row=per_row),
        price=Money(minor_units=1200, currency_code="EUR"),
    )
    return wrap(event, screening_id, 1, "movie")


def screening_rescheduled(screening_id: str, movie_id: str, version: int, hall: str) -> EventEnvelope:
    event = movie.ScreeningRescheduled(
        screening_id=screening_id, movie_id=movie_id, hall=hall, start_time=_ts(TOMORROW + timedelta(hours=2))
    )
    return wrap(event, screening_id, version, "movie")


def reservation_confirmed(
    reservation_id: str,
    screening_id: str,
    movie_id: str,
    seats: Iterable[str],
    customer_id: str = "customer-1",
    time: datetime | None = None,
) -> EventEnvelope:
    seat_list = list(seats)
    event = reservation.ReservationConfirmed(
        reservation_id=reservation_id,
        customer_id=customer_id,
        customer_email="ada@example.com",
        screening_id=screening_id,
        movie_id=movie_id,
        movie_title="Metropolis",
        hall="Hall 1",
        start_time=_ts(TOMORROW),
        seats=seat_list,
        amount=Money(minor_units=1200 * len(seat_list), currency_code="EUR"),
        payment_id=new_id(),
    )
    return wrap(event, reservation_id, 2, "reservation", time)


def reservation_cancelled(
    reservation_id: str, screening_id: str, movie_id: str, seats: Iterable[str], customer_id: str = "customer-1"
) -> EventEnvelope:
    seat_list = list(seats)
    event = reservation.ReservationCancelled(
        reservation_id=reservation_id,
        customer_id=customer_id,
        screening_id=screening_id,
        movie_id=movie_id,
        movie_title="Metropolis",
        start_time=_ts(TOMORROW),
        seats=seat_list,
        amount=Money(minor_units=1200 * len(seat_list), currency_code="EUR"),
        reason="changed my mind",
    )
    return wrap(event, reservation_id, 3, "reservation")


def payment_refunded(payment_id: str, reservation_id: str, version: int = 2) -> EventEnvelope:
    event = payment.PaymentRefunded(
        payment_id=payment_id,
        reservation_id=reservation_id,
        customer_id="customer-1",
        amount=Money(minor_units=1200, currency_code="EUR"),
    )
    return wrap(event, payment_id, version, "payment")


def review_posted(review_id: str, movie_id: str, rating: int) -> EventEnvelope:
    event = review.ReviewPosted(review_id=review_id, movie_id=movie_id, customer_id="c", rating=rating, text="ok")
    return wrap(event, review_id, 1, "review")


def review_deleted(review_id: str, movie_id: str, rating: int) -> EventEnvelope:
    event = review.ReviewDeleted(review_id=review_id, movie_id=movie_id, customer_id="c", rating=rating)
    return wrap(event, review_id, 2, "review")


async def publish_all(js: JetStreamContext, envelopes: Iterable[EventEnvelope], concurrency: int = 32) -> None:
    """Publish (acked by the stream), `concurrency` at a time; each in its own order within a lane."""
    queue = list(envelopes)
    lanes = [queue[i::concurrency] for i in range(concurrency)]

    async def lane(items: list[EventEnvelope]) -> None:
        for item in items:
            await jetstream.publish(js, item)

    await asyncio.gather(*(lane(items) for items in lanes if items))


async def publish_in_order(js: JetStreamContext, envelopes: Iterable[EventEnvelope]) -> None:
    for item in envelopes:
        await jetstream.publish(js, item)


def seat_names(count: int, start: int = 0, per_row: int = 10) -> list[str]:
    return [f"{chr(ord('A') + (n // per_row))}{n % per_row + 1}" for n in range(start, start + count)]


class Workload:
    """A mixed feed of every context with the counters it must leave: seats taken per screening,
    review count and rating sum per movie (each would be off on a lost or a doubled apply)."""

    def __init__(self, movies: int = 2, screenings_per_movie: int = 5) -> None:
        self.movie_ids = [new_id() for _ in range(movies)]
        self.screening_ids = [new_id() for _ in range(movies * screenings_per_movie)]
        self.movie_of = {sid: self.movie_ids[i % movies] for i, sid in enumerate(self.screening_ids)}
        self.catalog: list[EventEnvelope] = [
            movie_registered(mid, f"Movie {n}") for n, mid in enumerate(self.movie_ids)
        ]
        self.catalog += [
            screening_scheduled(sid, self.movie_of[sid], rows=26, per_row=99) for sid in self.screening_ids
        ]
        self.taken = dict.fromkeys(self.screening_ids, 0)
        self.review_count = dict.fromkeys(self.movie_ids, 0)
        self.rating_sum = dict.fromkeys(self.movie_ids, 0)
        self._next_seat = dict.fromkeys(self.screening_ids, 0)
        self._live: list[tuple[str, str, list[str]]] = []  # confirmed, not cancelled
        self._reviews: list[tuple[str, str, int]] = []
        self.count = 0

    def confirm(self, customer: str = "customer-1") -> EventEnvelope:
        sid = self.screening_ids[self.count % len(self.screening_ids)]
        seats = seat_names(2, self._next_seat[sid], per_row=99)
        self._next_seat[sid] += 2
        rid = new_id()
        self._live.append((rid, sid, seats))
        self.taken[sid] += 2
        self.count += 1
        return reservation_confirmed(rid, sid, self.movie_of[sid], seats, customer)

    def cancel(self) -> EventEnvelope:
        rid, sid, seats = self._live.pop(0)
        self.taken[sid] -= 2
        self.count += 1
        return reservation_cancelled(rid, sid, self.movie_of[sid], seats)

    def post_review(self) -> EventEnvelope:
        mid = self.movie_ids[self.count % len(self.movie_ids)]
        rating = self.count % 5 + 1
        rid = new_id()
        self._reviews.append((rid, mid, rating))
        self.review_count[mid] += 1
        self.rating_sum[mid] += rating
        self.count += 1
        return review_posted(rid, mid, rating)

    def delete_review(self) -> EventEnvelope:
        rid, mid, rating = self._reviews.pop(0)
        self.review_count[mid] -= 1
        self.rating_sum[mid] -= rating
        self.count += 1
        return review_deleted(rid, mid, rating)

    def mixed(self, n: int) -> list[EventEnvelope]:
        """`n` events: confirmations, cancellations of earlier ones, reviews and deletions."""
        feed: list[EventEnvelope] = []
        for i in range(n):
            slot = i % 10
            if slot in (0, 1, 2, 3, 4) or (slot == 5 and not self._live):
                feed.append(self.confirm())
            elif slot == 5:
                feed.append(self.cancel())
            elif slot in (6, 7, 8) or not self._reviews:
                feed.append(self.post_review())
            else:
                feed.append(self.delete_review())
        return feed


async def counters_match(store: object, workload: Workload) -> bool:
    """The model's counters equal what the workload expects."""
    from services.viewpage.adapters.redis_store import RedisReadModel

    assert isinstance(store, RedisReadModel)
    documents = await store.board_documents()
    taken = {sid: documents.taken.get(sid, 0) for sid in workload.screening_ids}
    counts = {mid: documents.reviews.get(f"{mid}:n", 0) for mid in workload.movie_ids}
    sums = {mid: documents.reviews.get(f"{mid}:sum", 0) for mid in workload.movie_ids}
    return taken == workload.taken and counts == workload.review_count and sums == workload.rating_sum
