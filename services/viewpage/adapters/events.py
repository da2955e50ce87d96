"""Events as the board takes them: protobuf (cinema.<context>.v1) in, domain.events values out.

An event type the board does not follow translates to None (acked and ignored), so a context
may add events without breaking the board.
"""

from __future__ import annotations

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1.seat_pb2 import SeatMap
from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.movie.v1 import events_pb2 as movie
from cinema.payment.v1 import events_pb2 as payment
from cinema.reservation.v1 import events_pb2 as reservation
from cinema.review.v1 import events_pb2 as review
from services.viewpage.domain import events as ev

# The contexts whose streams the board follows.
CONTEXTS = ("movie", "reservation", "payment", "review")


def _ms(stamp: Timestamp) -> int:
    return stamp.seconds * 1000 + stamp.nanos // 1_000_000


def meta_of(envelope: EventEnvelope) -> ev.EventMeta:
    return ev.EventMeta(envelope.aggregate_id, envelope.aggregate_version, _ms(envelope.time))


def sellable_seats(seat_map: SeatMap) -> int:
    return max(0, seat_map.rows * seat_map.seats_per_row - len(set(seat_map.blocked_seats)))


def blocked_seats(seat_map: SeatMap) -> int:
    return min(seat_map.rows * seat_map.seats_per_row, len(set(seat_map.blocked_seats)))


def to_domain(event: Message) -> ev.BoardEvent | None:
    match event:
        case movie.MovieRegistered() | movie.MovieUpdated():
            return ev.MovieDetailsChanged(
                event.movie_id, event.title, tuple(event.genres), event.duration_minutes, event.poster_url
            )
        case movie.MovieDeleted():
            return ev.MovieRemoved(event.movie_id)
        case movie.ScreeningScheduled():
            return ev.ScreeningScheduled(
                screening_id=event.screening_id,
                movie_id=event.movie_id,
                movie_title=event.movie_title,
                duration_minutes=event.duration_minutes,
                hall=event.hall,
                start_time_ms=_ms(event.start_time),
                total_seats=sellable_seats(event.seat_map),
                price_minor=event.price.minor_units,
                currency=event.price.currency_code,
                blocked_seats=blocked_seats(event.seat_map),
            )
        case movie.ScreeningRescheduled():
            return ev.ScreeningRescheduled(event.screening_id, event.movie_id, event.hall, _ms(event.start_time))
        case movie.ScreeningCancelled():
            return ev.ScreeningCancelled(event.screening_id, event.movie_id)
        case reservation.ReservationConfirmed():
            return ev.ReservationChanged(
                reservation_id=event.reservation_id,
                customer_id=event.customer_id,
                state=ev.RESERVATION_CONFIRMED,
                screening_id=event.screening_id,
                seats=tuple(event.seats),
                movie_id=event.movie_id,
                movie_title=event.movie_title,
                hall=event.hall,
                start_time_ms=_ms(event.start_time) if event.HasField("start_time") else None,
                amount_minor=event.amount.minor_units if event.HasField("amount") else None,
                currency=event.amount.currency_code if event.HasField("amount") else None,
            )
        case reservation.ReservationCancelled():
            return ev.ReservationChanged(
                reservation_id=event.reservation_id,
                customer_id=event.customer_id,
                state=ev.RESERVATION_CANCELLED,
                screening_id=event.screening_id,
                seats=tuple(event.seats),
                movie_id=event.movie_id,
                movie_title=event.movie_title,
                start_time_ms=_ms(event.start_time) if event.HasField("start_time") else None,
                amount_minor=event.amount.minor_units if event.HasField("amount") else None,
                currency=event.amount.currency_code if event.HasField("amount") else None,
            )
        case reservation.ReservationFailed():
            return ev.ReservationChanged(
                reservation_id=event.reservation_id,
                customer_id=event.customer_id,
                state=ev.RESERVATION_FAILED,
                screening_id=event.screening_id,
                seats=tuple(event.seats),
            )
        case payment.PaymentAuthorized():
            return ev.PaymentChanged(
                event.payment_id,
                event.reservation_id,
                ev.PAYMENT_APPROVED,
                event.amount.minor_units if event.HasField("amount") else None,
                event.amount.currency_code if event.HasField("amount") else None,
            )
        case payment.PaymentDeclined():
            return ev.PaymentChanged(event.payment_id, event.reservation_id, ev.PAYMENT_DECLINED)
        case payment.PaymentRefunded():
            return ev.PaymentChanged(
                event.payment_id,
                event.reservation_id,
                ev.PAYMENT_REFUNDED,
                event.amount.minor_units if event.HasField("amount") else None,
                event.amount.currency_code if event.HasField("amount") else None,
            )
        case review.ReviewPosted():
            return ev.ReviewPosted(event.review_id, event.movie_id, event.rating)
        case review.ReviewDeleted():
            return ev.ReviewDeleted(event.review_id, event.movie_id)
    return None
