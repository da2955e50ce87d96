"""A realistic catalog for the benchmark, registered through the movie service's API.

Twenty movies and two hundred screenings of 100 to 300 seats by default, in ten halls over five
days, sent in parallel by a manager as the theatre's back office would, with a progress line.
Then it waits until the events have reached the two places that build from them: reservation's
replica of the screenings (GetSeatAvailability answers for each) and the board (GetBoard lists
every screening). Halls carry the run's tag, so a second run against a running stack does not
collide with the halls of the first.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from scripts.bench.auth import Metadata
from scripts.bench.stack import channel as open_channel
from services.kit.grpc_errors import find_detail

HALLS = 10
SLOTS_PER_DAY = 4  # 10:00, 14:00, 18:00, 22:00: four hours hold the longest movie plus cleaning
PARALLEL = 16
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED)
RETRY_BUDGET_S = 120.0  # a seeding call is given up after this long of retryable failures
MAX_RETRY_WAIT_S = 10.0  # a hint longer than this is not waited out in full (bounded)

_FIRST = ("The", "A", "Last", "Silent", "Midnight", "Northern", "Paper", "Golden", "Hidden", "Electric")
_SECOND = ("Harbor", "Orchard", "Signal", "Garden", "Winter", "Engine", "Letters", "Lantern", "Frontier", "Tide")
_GENRES = ("drama", "comedy", "thriller", "sci-fi", "family", "documentary", "romance", "horror", "animation")


@dataclass(frozen=True)
class SeededScreening:
    screening_id: str
    movie_id: str
    rows: int
    seats_per_row: int

    def seats(self) -> list[str]:
        return [f"{chr(65 + r)}{n}" for r in range(self.rows) for n in range(1, self.seats_per_row + 1)]


@dataclass(frozen=True)
class Catalog:
    movie_ids: tuple[str, ...]
    screenings: tuple[SeededScreening, ...]

    @property
    def seats(self) -> int:
        return sum(s.rows * s.seats_per_row for s in self.screenings)


def bench_description(what: str, run_tag: str) -> str:
    """The description of a movie a benchmark registers: how scripts/bench/cleanup.py finds it."""
    return f"Benchmark {what} of run {run_tag}."


def seat_map_for(rng: random.Random, min_seats: int = 100, max_seats: int = 300) -> tuple[int, int]:
    """Rows and seats per row with min_seats <= rows * seats_per_row <= max_seats."""
    rows = rng.randint(8, 15)
    per_row = rng.randint(math.ceil(min_seats / rows), max_seats // rows)
    return rows, per_row


class Progress:
    """One status line, rewritten in place on a terminal, else printed once a second."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.errors = label, total, 0, 0
        self._last = 0.0
        self._tty = sys.stdout.isatty()

    def step(self, ok: bool = True) -> None:
        self.done += 1
        self.errors += 0 if ok else 1
        now = time.monotonic()
        if now - self._last >= (0.1 if self._tty else 1.0) or self.done == self.total:
            self._last = now
            line = f"  {self.label}: {self.done}/{self.total} ({self.errors} errors)"
            print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", flush=True)
            if self._tty and self.done == self.total:
                print()


def retry_hint_s(err: grpc.aio.AioRpcError) -> float | None:
    """The server's google.rpc.RetryInfo delay in seconds, if the error carries one."""
    info = find_detail(err, error_details_pb2.RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return None
    seconds: float = info.retry_delay.ToTimedelta().total_seconds()
    return max(0.0, seconds)


async def call_with_retry(
    call: grpc.aio.UnaryUnaryMultiCallable,  # type: ignore[type-arg]
    request: object,
    metadata: Metadata,
    *,
    timeout_s: float = 20,
    give_up_after_s: float = RETRY_BUDGET_S,
    rng: random.Random | None = None,
) -> object:
    """Send `request` until it is answered, the same request again on a retryable status.

    Idempotent requests only (they carry a request id): a retry is the same request. The wait
    before a retry is the server's RetryInfo hint when it sends one (e.g. movie's "the first
    attempt of this request is still booking the hall; retry", or an admission refusal), else
    an exponential backoff from 0.2 s, both with a little jitter and capped at
    `MAX_RETRY_WAIT_S`; after `give_up_after_s` the last error is raised.
    """
    jitter = rng or random.Random()
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + give_up_after_s
    for attempt in itertools.count():
        try:
            return await call(request, metadata=metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE:
                raise
            hint = retry_hint_s(err)
            wait_s = min(hint if hint is not None else 0.2 * 2 ** min(attempt, 5), MAX_RETRY_WAIT_S)
            wait_s *= 1 + 0.2 * jitter.random()  # spread the retries of a parallel batch
            if loop.time() + wait_s > give_up_at:
                raise
            await asyncio.sleep(wait_s)
    raise AssertionError("unreachable")


async def seed_catalog(
    movie_address: str, manager: Metadata, run_tag: str, movies: int, screenings: int, rng: random.Random
) -> Catalog:
    """Register the movies and screenings (idempotent by request ids derived from the run tag)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"cinema-bench/{run_tag}")
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    async with open_channel(movie_address) as channel:
        stub = movie_pb2_grpc.MovieServiceStub(channel)
        limit = asyncio.Semaphore(PARALLEL)
        progress = Progress("seeding movies", movies)

        async def create_movie(i: int) -> str:
            title = f"{_FIRST[i % 10]} {_SECOND[(i // 10 + i) % 10]} {i + 1} ({run_tag})"
            movie = movie_pb2.Movie(
                title=title,
                duration_minutes=rng.randint(85, 170),
                genres=rng.sample(_GENRES, 2),
                description=bench_description(f"movie {i + 1}", run_tag),
            )
            request = movie_pb2.CreateMovieRequest(movie=movie, request_id=str(uuid.uuid5(namespace, f"movie/{i}")))
            async with limit:
                try:
                    reply = await call_with_retry(stub.CreateMovie, request, manager)
                except grpc.aio.AioRpcError:
                    progress.step(ok=False)
                    raise
            progress.step()
            assert isinstance(reply, movie_pb2.CreateMovieResponse)
            return str(reply.movie.id)

        movie_ids = await asyncio.gather(*(create_movie(i) for i in range(movies)))

        slots = [(hall, day, slot) for hall in range(HALLS) for day in range(30) for slot in range(SLOTS_PER_DAY)]
        if screenings > len(slots):
            raise ValueError(f"at most {len(slots)} screenings fit in {HALLS} halls over 30 days")
        chosen = sorted(rng.sample(slots, screenings), key=lambda s: (s[1], s[2], s[0]))
        progress = Progress("seeding screenings", screenings)

        async def schedule(j: int, hall: int, day: int, slot: int) -> SeededScreening:
            movie_id = movie_ids[j % movies]
            rows, per_row = seat_map_for(rng)
            starts = first_day + timedelta(days=day, hours=10 + 4 * slot)
            screening = movie_pb2.Screening(
                hall=f"bench-{run_tag}-{hall + 1}",
                seat_map=SeatMap(rows=rows, seats_per_row=per_row),
                price=Money(minor_units=rng.choice((900, 1050, 1200, 1450)), currency_code="EUR"),
            )
            screening.start_time.FromDatetime(starts)
            request = movie_pb2.ScheduleScreeningRequest(
                movie_id=movie_id, screening=screening, request_id=str(uuid.uuid5(namespace, f"screening/{j}"))
            )
            async with limit:
                try:
                    reply = await call_with_retry(stub.ScheduleScreening, request, manager)
                except grpc.aio.AioRpcError:
                    progress.step(ok=False)
                    raise
            progress.step()
            assert isinstance(reply, movie_pb2.ScheduleScreeningResponse)
            return SeededScreening(str(reply.screening.id), movie_id, rows, per_row)

        seeded = await asyncio.gather(*(schedule(j, *slot) for j, slot in enumerate(chosen)))
    return Catalog(tuple(movie_ids), tuple(seeded))


async def wait_until_propagated(
    catalog: Catalog, reservation_address: str, board_address: str, customer: Metadata, timeout_s: float = 120
) -> float:
    """Wait until reservation's replica and the board know every seeded screening; returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout_s
    wanted = {s.screening_id for s in catalog.screenings}
    async with (
        open_channel(reservation_address) as res_channel,
        open_channel(board_address) as board_channel,
    ):
        reservations = reservation_pb2_grpc.ReservationServiceStub(res_channel)
        board = board_pb2_grpc.BoardServiceStub(board_channel)
        unknown = set(wanted)
        progress = Progress("screenings in reservation's replica", len(wanted))
        while unknown and time.monotonic() < deadline:
            for sid in sorted(unknown):
                try:
                    await reservations.GetSeatAvailability(
                        reservation_pb2.GetSeatAvailabilityRequest(screening_id=sid), metadata=customer, timeout=5
                    )
                except grpc.aio.AioRpcError as err:
                    if err.code() in RETRYABLE:  # a busy stack: ask again after its hint
                        await asyncio.sleep(min(retry_hint_s(err) or 0.2, MAX_RETRY_WAIT_S))
                    elif err.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    continue
                unknown.discard(sid)
                progress.step()
            if unknown:
                await asyncio.sleep(0.2)
        while time.monotonic() < deadline:
            try:
                movies = await whole_board(board)
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(min(retry_hint_s(err) or 0.2, MAX_RETRY_WAIT_S))
                continue
            shown = {s.screening_id for m in movies for s in m.screenings}
            if not unknown and wanted <= shown:
                print(f"  the board shows all {len(wanted)} screenings", flush=True)
                return time.monotonic() - started
            await asyncio.sleep(0.2)
    raise RuntimeError(
        f"the catalog did not propagate within {timeout_s:.0f} s ({len(unknown)} screenings unknown to reservation)"
    )


async def whole_board(
    board: board_pb2_grpc.BoardServiceAsyncStub, timeout_s: float = 10.0
) -> list[board_pb2.BoardMovie]:
    """Every movie of the board, page after page (a page holds at most 100)."""
    movies: list[board_pb2.BoardMovie] = []
    token = ""
    while True:
        reply = await board.GetBoard(board_pb2.GetBoardRequest(page_size=100, page_token=token), timeout=timeout_s)
        movies.extend(reply.movies)
        token = reply.next_page_token
        if not token:
            return movies
