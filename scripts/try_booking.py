#!/usr/bin/env python3
"""Try the running system (`make up`) as the demo customer: browse the catalog, see a
screening's free seats, reserve two, review the movie, cancel. Signs in at the identity
service (OAuth2 password grant) and calls everything over gRPC through the Envoy ingress, with
the generated clients, as any client would.

    .venv/bin/python scripts/try_booking.py
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.notification.v1 import notification_pb2, notification_pb2_grpc
from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from cinema.review.v1 import review_pb2, review_pb2_grpc
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from scripts.stack import components, edge

STATE = reservation_pb2.ReservationState


async def main() -> int:
    ingress = f"127.0.0.1:{components.INGRESS_PORT}"
    token_url = f"http://{ingress}/oauth2/token"
    token = await asyncio.to_thread(edge.password_token, token_url, *edge.DEMO_CUSTOMER)
    print(f"signed in as {edge.DEMO_CUSTOMER[0]} at {token_url}")
    me = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(ingress) as ch:
        movies = movie_pb2_grpc.MovieServiceStub(ch)
        reservations = reservation_pb2_grpc.ReservationServiceStub(ch)
        reviews = review_pb2_grpc.ReviewServiceStub(ch)
        board = board_pb2_grpc.BoardServiceStub(ch)
        notifications = notification_pb2_grpc.NotificationServiceStub(ch)

        listed = await movies.ListMovies(movie_pb2.ListMoviesRequest(page_size=10), timeout=5)
        print("movies:", ", ".join(f"{m.title} ({m.duration_minutes} min)" for m in listed.movies))
        movie = listed.movies[0]
        shows = await movies.ListScreenings(movie_pb2.ListScreeningsRequest(movie_id=movie.id), timeout=5)
        screening = shows.screenings[0]
        seats = await reservations.GetSeatAvailability(
            reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening.id), timeout=5
        )
        print(
            f"{movie.title}, hall {screening.hall}, {screening.start_time.ToDatetime():%a %d %b %H:%M} UTC: "
            f"{seats.free_seat_count}/{seats.total_seat_count} seats free, "
            f"{seats.price.minor_units / 100:.2f} {seats.price.currency_code} each"
        )

        taken = set(seats.taken_seats)
        wanted = [s for s in (f"{r}{n}" for r in "DEFGH" for n in range(5, 13)) if s not in taken][:2]
        created = await reservations.CreateReservation(
            reservation_pb2.CreateReservationRequest(
                screening_id=screening.id,
                seats=wanted,
                request_id=str(uuid.uuid4()),
                card=Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123"),
            ),
            metadata=me,
            timeout=5,
        )
        r = created.reservation
        print(
            f"reserved {', '.join(r.seats)}: {STATE.Name(r.state)}, "
            f"{r.amount.minor_units / 100:.2f} {r.amount.currency_code}, reservation {r.id}"
        )

        # one review per customer and movie: a second run replaces the demo customer's earlier one
        earlier = await reviews.ListReviews(review_pb2.ListReviewsRequest(movie_id=movie.id, page_size=100), timeout=5)
        for old in earlier.reviews:
            if old.customer_id == edge.token_subject(token):
                await reviews.DeleteReview(review_pb2.DeleteReviewRequest(review_id=old.id), metadata=me, timeout=5)
        await reviews.CreateReview(
            review_pb2.CreateReviewRequest(
                movie_id=movie.id, review=review_pb2.Review(rating=5, text="Loved it."), request_id=str(uuid.uuid4())
            ),
            metadata=me,
            timeout=5,
        )
        await asyncio.sleep(1.5)  # the movie service counts it from the ReviewPosted event
        counted = await movies.GetMovie(movie_pb2.GetMovieRequest(movie_id=movie.id), timeout=5)
        print(
            f"reviewed {movie.title}: {counted.movie.review_count} review(s), "
            f"average {counted.movie.average_rating:.1f}"
        )

        await asyncio.sleep(0.5)
        shown = await board.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id=movie.id), timeout=5)
        first = next(x for x in shown.movie.screenings if x.screening_id == screening.id)
        print(
            f"the board (built from events only): {shown.movie.title}, {first.free_seats}/{first.total_seats} "
            f"seats free, {shown.movie.review_count} review(s)"
        )

        cancelled = await reservations.CancelReservation(
            reservation_pb2.CancelReservationRequest(reservation_id=r.id, reason="just trying"), metadata=me, timeout=5
        )
        print(
            f"cancelled: {STATE.Name(cancelled.reservation.state)} "
            "(payment refunds it when it sees ReservationCancelled)"
        )
        await asyncio.sleep(2.5)  # confirmation, cancellation and refund each mail the customer (the newest three)
        mail = await notifications.ListNotifications(
            notification_pb2.ListNotificationsRequest(page_size=3), metadata=me, timeout=5
        )
        for n in reversed(mail.notifications):
            print(f"mail to {n.recipient}: {n.subject!r} ({notification_pb2.NotificationState.Name(n.state)})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except grpc.aio.AioRpcError as err:
        print(f"{err.code().name}: {err.details()}  (is `make up` running? `make status` tells)", file=sys.stderr)
        sys.exit(1)
