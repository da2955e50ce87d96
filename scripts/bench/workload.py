"""The mixed workload: what a crowd of customers does, one gRPC call per arrival.

| operation   | call                                 | who, what                                                |
|-------------|--------------------------------------|----------------------------------------------------------|
| board       | BoardService.GetBoard                | anonymous                                                |
| movie_board | BoardService.GetMovieBoard           | anonymous, a random movie                                |
| movie       | MovieService.GetMovie                | anonymous, a random movie                                |
| reserve     | ReservationService.CreateReservation | a customer: 1-4 free seats of a random screening, paid   |
| cancel      | ReservationService.CancelReservation | the customer of a random confirmed reservation           |
| review      | ReviewService.CreateReview           | a customer who has not reviewed that movie yet           |

Seats are handed out from a shuffled list per screening, so reservations never collide by
design (a SEATS_TAKEN would be a finding). Cancelled seats are not reused.

Event-to-view lag: for a sample of confirmed reservations, the customer's board view
(ListCustomerReservations) is polled until the reservation shows as CONFIRMED; the lag is the
time from the CreateReservation reply to that first sighting (resolution: the poll interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from cinema.review.v1 import review_pb2, review_pb2_grpc
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from scripts.bench.auth import Customer, Tokens
from scripts.bench.catalog import Catalog
from scripts.bench.openloop import SKIPPED
from scripts.bench.stack import channel as open_channel

OPERATIONS = ("board", "movie_board", "movie", "reserve", "cancel", "review")
DEFAULT_WEIGHTS = {"board": 20, "movie_board": 20, "movie": 15, "reserve": 30, "cancel": 7, "review": 8}
APPROVED_CARD = Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123")
_REVIEW_TEXTS = ("Loved it.", "Not my thing.", "The second half drags.", "Go and see it.", "Great sound in hall 3.")


def make_workload(
    target: str,
    ingress: str,
    catalog: Catalog,
    tokens: Tokens,
    addresses: Mapping[str, str],
    rng: random.Random,
    **options: Any,
) -> Workload:
    """The gRPC workload, or with target `rest` the same operations over REST through the ingress."""
    if target == "rest":
        from scripts.bench.rest_workload import RestWorkload

        return RestWorkload(catalog, tokens, addresses, rng, base_url=f"http://{ingress}", **options)
    return Workload(catalog, tokens, addresses, rng, **options)


def parse_weights(spec: str) -> dict[str, float]:
    """`reserve=30,board=20` -> weights; operations not named keep their default weight."""
    weights: dict[str, float] = dict(DEFAULT_WEIGHTS)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in OPERATIONS:
            raise ValueError(f"bad weight {part!r}: use name=number with name one of {', '.join(OPERATIONS)}")
        weights[name] = float(value)
        if weights[name] < 0:
            raise ValueError(f"weight of {name} is negative")
    return weights


def status_name(err: grpc.aio.AioRpcError) -> str:
    return str(err.code().name)


@dataclass
class LagTracker:
    """Polls the board for sampled reservations; keeps the lags of those confirmed in the window."""

    board: board_pb2_grpc.BoardServiceAsyncStub
    sample_every: int = 3
    max_concurrent: int = 6
    interval_s: float = 0.01
    give_up_s: float = 30.0
    lags_s: list[float] = field(default_factory=list)
    timeouts: int = 0
    probes: int = 0
    _seen: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def offer(self, reservation_id: str, customer: Customer, confirmed_at: float, counts: bool) -> None:
        self._seen += 1
        if self._seen % self.sample_every or len(self._tasks) >= self.max_concurrent:
            return
        task = asyncio.ensure_future(self._watch(reservation_id, customer, confirmed_at, counts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, reservation_id: str, customer: Customer, confirmed_at: float, counts: bool) -> None:
        request = board_pb2.ListCustomerReservationsRequest(page_size=20)
        while time.perf_counter() - confirmed_at < self.give_up_s:
            self.probes += 1
            reply: board_pb2.ListCustomerReservationsResponse | None = None
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await self.board.ListCustomerReservations(request, metadata=customer.metadata, timeout=5)
            if reply is not None and any(
                r.reservation_id == reservation_id and r.state == reservation_pb2.RESERVATION_STATE_CONFIRMED
                for r in reply.reservations
            ):
                if counts:
                    self.lags_s.append(time.perf_counter() - confirmed_at)
                return
            await asyncio.sleep(self.interval_s)
        if counts:
            self.timeouts += 1

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()


class Channels:
    """One channel per distinct address (with --target ingress they are all the same one)."""

    def __init__(self) -> None:
        self._by_address: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        if address not in self._by_address:
            self._by_address[address] = open_channel(address)
        return self._by_address[address]

    async def close(self) -> None:
        for channel in self._by_address.values():
            await channel.close(grace=None)
        self._by_address.clear()


@dataclass
class Workload:
    """The operations, bound to stubs, the seeded catalog and the customers."""

    catalog: Catalog
    tokens: Tokens
    addresses: Mapping[str, str]  # service -> host:port (all the ingress with --target ingress)
    rng: random.Random
    rpc_timeout_s: float = 10.0
    in_window: Callable[[float], bool] = lambda _t: True
    channels: Channels = field(default_factory=Channels)
    confirmed: list[tuple[str, Customer]] = field(default_factory=list)
    seats_reserved: int = 0
    lag: LagTracker = field(init=False)

    def __post_init__(self) -> None:
        self.board = board_pb2_grpc.BoardServiceStub(self.channels.get(self.addresses["viewpage"]))
        self.movies = movie_pb2_grpc.MovieServiceStub(self.channels.get(self.addresses["movie"]))
        self.reservations = reservation_pb2_grpc.ReservationServiceStub(
            self.channels.get(self.addresses["reservation"])
        )
        self.reviews = review_pb2_grpc.ReviewServiceStub(self.channels.get(self.addresses["review"]))
        self.lag = LagTracker(self.board)
        self._free: dict[str, list[str]] = {}
        for screening in self.catalog.screenings:
            seats = screening.seats()
            self.rng.shuffle(seats)
            self._free[screening.screening_id] = seats
        self._open = [s.screening_id for s in self.catalog.screenings]
        self._reviewed: set[tuple[int, int]] = set()

    def operations(self) -> dict[str, Callable[[], Awaitable[str | None]]]:
        return {
            "board": self.get_board,
            "movie_board": self.get_movie_board,
            "movie": self.get_movie,
            "reserve": self.reserve,
            "cancel": self.cancel,
            "review": self.review,
        }

    async def _unary(self, call: Any, request: Any, metadata: Any = None) -> tuple[Any, str | None]:
        try:
            return await call(request, metadata=metadata, timeout=self.rpc_timeout_s), None
        except grpc.aio.AioRpcError as err:
            return None, status_name(err)

    async def get_board(self) -> str | None:
        # The first page, of the size the web screen asks for (the board is paginated; a page
        # costs the same whatever the catalog's size).
        _reply, code = await self._unary(self.board.GetBoard, board_pb2.GetBoardRequest(page_size=24))
        return code

    async def get_movie_board(self) -> str | None:
        movie_id = self.rng.choice(self.catalog.movie_ids)
        _reply, code = await self._unary(self.board.GetMovieBoard, board_pb2.GetMovieBoardRequest(movie_id=movie_id))
        return code

    async def get_movie(self) -> str | None:
        movie_id = self.rng.choice(self.catalog.movie_ids)
        _reply, code = await self._unary(self.movies.GetMovie, movie_pb2.GetMovieRequest(movie_id=movie_id))
        return code

    def _take_seats(self) -> tuple[str, list[str]] | None:
        while self._open:
            screening_id = self.rng.choice(self._open)
            free = self._free[screening_id]
            if not free:
                self._open.remove(screening_id)
                continue
            count = min(len(free), self.rng.choice((1, 2, 2, 3, 4)))
            return screening_id, [free.pop() for _ in range(count)]
        return None

    async def reserve(self) -> str | None:
        taken = self._take_seats()
        if taken is None:
            return "CLIENT_SOLD_OUT"
        screening_id, seats = taken
        customer = self.rng.choice(self.tokens.customers)
        request = reservation_pb2.CreateReservationRequest(
            screening_id=screening_id, seats=seats, request_id=str(uuid.uuid4()), card=APPROVED_CARD
        )
        reply, code = await self._unary(self.reservations.CreateReservation, request, customer.metadata)
        if code is not None:
            return code
        reservation = reply.reservation
        if reservation.state != reservation_pb2.RESERVATION_STATE_CONFIRMED:
            return f"STATE_{reservation_pb2.ReservationState.Name(reservation.state)}"
        self._confirmed_now(reservation.id, customer, len(seats))
        return None

    def _confirmed_now(self, reservation_id: str, customer: Customer, seats: int) -> None:
        now = time.perf_counter()
        self.seats_reserved += seats
        self.confirmed.append((reservation_id, customer))
        self.lag.offer(reservation_id, customer, now, self.in_window(now))

    def _pick_confirmed(self) -> tuple[str, Customer] | None:
        """A random confirmed reservation to cancel (taken off the list), or None."""
        if not self.confirmed:
            return None
        index = self.rng.randrange(len(self.confirmed))
        self.confirmed[index], self.confirmed[-1] = self.confirmed[-1], self.confirmed[index]
        return self.confirmed.pop()

    def _pick_review(self) -> tuple[Customer, str] | None:
        """A customer and a movie they have not reviewed yet, or None when every pair has."""
        customers, movies = len(self.tokens.customers), len(self.catalog.movie_ids)
        if len(self._reviewed) >= customers * movies:
            return None
        while True:
            pair = (self.rng.randrange(customers), self.rng.randrange(movies))
            if pair not in self._reviewed:
                break
        self._reviewed.add(pair)
        return self.tokens.customers[pair[0]], self.catalog.movie_ids[pair[1]]

    async def close(self) -> None:
        await self.channels.close()

    async def cancel(self) -> str | None:
        picked = self._pick_confirmed()
        if picked is None:
            return SKIPPED
        reservation_id, customer = picked
        request = reservation_pb2.CancelReservationRequest(reservation_id=reservation_id, reason="bench")
        _reply, code = await self._unary(self.reservations.CancelReservation, request, customer.metadata)
        return code

    async def review(self) -> str | None:
        picked = self._pick_review()
        if picked is None:
            return SKIPPED
        customer, movie_id = picked
        request = review_pb2.CreateReviewRequest(
            movie_id=movie_id,
            review=review_pb2.Review(rating=self.rng.randint(1, 5), text=self.rng.choice(_REVIEW_TEXTS)),
            request_id=str(uuid.uuid4()),
        )
        _reply, code = await self._unary(self.reviews.CreateReview, request, customer.metadata)
        return code
