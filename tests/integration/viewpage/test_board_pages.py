"""The paginated board on real Redis (and through gRPC): entries materialised by the applies equal
what the domain views say, pages walk the title order with every filter, tokens are checked, and
a page costs the same Redis work with 10 or 1,000 movies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import grpc
import grpc.aio
import pytest
import redis.asyncio as aioredis
from nats.js.client import JetStreamContext

from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from services.kit import errors
from services.viewpage.adapters import grpc_api
from services.viewpage.adapters.redis_store import RedisReadModel
from services.viewpage.bootstrap import ViewpageApp
from services.viewpage.domain import board as views
from services.viewpage.domain import events as ev
from services.viewpage.domain.projection import Plan, plan_for
from services.viewpage.service_layer import queries
from services.viewpage.settings import ViewpageSettings
from tests.integration.viewpage import helpers as h
from tests.support.polling import eventually

if TYPE_CHECKING:
    from cinema.viewpage.v1.board_pb2_grpc import BoardServiceAsyncStub

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")
# A fixed "now" (a Thursday, 10:00 UTC) and screenings around it, so every run sees the same board.
NOW = datetime(2030, 3, 7, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def clock() -> int:
    return NOW_MS


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Catalog:
    """Events of a catalog, as plans for the store, with the version each aggregate reached."""

    def __init__(self, zone: tzinfo = BERLIN) -> None:
        self.zone = zone
        self.plans: list[Plan] = []
        self._versions: dict[str, int] = {}
        self._time = NOW_MS - 3_600_000

    def add(self, aggregate: str, event: ev.BoardEvent) -> None:
        version = self._versions.get(aggregate, 0) + 1
        self._versions[aggregate] = version
        self._time += 1
        self.plans.append(plan_for(event, ev.EventMeta(aggregate, version, self._time), self.zone))

    def movie(self, title: str, genres: Iterable[str] = ("drama",)) -> str:
        movie_id = h.new_id()
        self.add(movie_id, ev.MovieDetailsChanged(movie_id, title, tuple(genres), 100, f"https://p/{title}.png"))
        return movie_id

    def screening(self, movie_id: str, start: datetime, *, seats: int = 100, hall: str = "Hall 1") -> str:
        screening_id = h.new_id()
        self.add(
            screening_id,
            ev.ScreeningScheduled(screening_id, movie_id, "hint", 100, hall, _ms(start), seats, 1150, "EUR"),
        )
        return screening_id

    async def apply(self, store: RedisReadModel) -> None:
        generation = await store.live_generation()
        for start in range(0, len(self.plans), 200):
            await store.apply_many(self.plans[start : start + 200], generation)


ALL = queries.BoardFilter()


def flat(pages: list[list[str]]) -> list[str]:
    return [movie_id for page in pages for movie_id in page]


async def read_page(
    store: RedisReadModel, filters: queries.BoardFilter = ALL, size: int = 0, token: str = ""
) -> tuple[board_pb2.GetBoardResponse, queries.BoardPage]:
    page = await queries.get_board(store, filters, size, token, zone=BERLIN, zone_name="Europe/Berlin", clock=clock)
    return board_pb2.GetBoardResponse.FromString(grpc_api.board_bytes(page)), page


async def walk(store: RedisReadModel, filters: queries.BoardFilter, size: int) -> list[list[str]]:
    """Every page of the board (movie ids per page), following the tokens."""
    pages: list[list[str]] = []
    token = ""
    while True:
        response, page = await read_page(store, filters, size, token)
        assert page.count == len(response.movies)
        pages.append([m.movie_id for m in response.movies])
        token = response.next_page_token
        if not token:
            return pages
        assert len(pages) < 1000


async def test_materialised_entries_equal_the_domain_views_byte_for_byte(store: RedisReadModel) -> None:
    catalog = Catalog()
    tomorrow = NOW + timedelta(days=1)
    drama = catalog.movie("Ärger im Paradies", ("Drama", "comedy"))
    quiet = catalog.movie("a quiet place", ())
    gone = catalog.movie("Gone", ("drama",))
    empty = catalog.movie("No screenings yet", ("drama",))
    started = catalog.movie("Started already", ("horror",))
    s1 = catalog.screening(drama, tomorrow)
    s2 = catalog.screening(drama, NOW + timedelta(hours=2), hall="Saal Ü")
    s3 = catalog.screening(drama, tomorrow + timedelta(days=3))
    catalog.screening(quiet, tomorrow, seats=0)
    catalog.screening(gone, tomorrow)
    catalog.screening(started, NOW - timedelta(minutes=5))
    cancelled = catalog.screening(quiet, tomorrow + timedelta(hours=1))
    catalog.add(cancelled, ev.ScreeningCancelled(cancelled, quiet))
    catalog.add(gone, ev.MovieRemoved(gone))
    for n, rating in enumerate((5, 4, 4)):  # mean 4.333.. -> 4.33
        review_id = h.new_id()
        catalog.add(review_id, ev.ReviewPosted(review_id, drama, rating))
        if n == 2:
            catalog.add(review_id, ev.ReviewDeleted(review_id, drama))  # mean of 5 and 4: 4.5
    reservation_id = h.new_id()
    catalog.add(
        reservation_id,
        ev.ReservationChanged(reservation_id, "c1", ev.RESERVATION_CONFIRMED, s1, ("A1", "A2", "A3"), movie_id=drama),
    )
    await catalog.apply(store)

    documents = await store.board_documents()
    expected = views.board(documents.movies, documents.screenings, documents.taken, documents.reviews, NOW_MS)
    assert [m.movie_id for m in expected] == [quiet, drama]  # casefolded title order; the others are off
    response, page = await read_page(store)
    wire = b"".join(grpc_api.movie_board_bytes(grpc_api.movie_message(m).SerializeToString()) for m in expected)
    assert page.movies == wire  # the very bytes the generated classes write for the domain's views
    assert list(response.movies) == [grpc_api.movie_message(m) for m in expected]
    shown = response.movies[1]
    assert [(s.screening_id, s.free_seats, s.hall) for s in shown.screenings] == [
        (s2, 100, "Saal Ü"),
        (s1, 97, "Hall 1"),
        (s3, 100, "Hall 1"),
    ]
    assert (shown.review_count, shown.average_rating) == (2, 4.5)
    assert response.time_zone == "Europe/Berlin"
    # The days with screenings from today (Berlin) on; the started screening's day is today too.
    day = tomorrow.astimezone(BERLIN).date()
    assert list(response.days) == [
        NOW.astimezone(BERLIN).date().isoformat(),
        day.isoformat(),
        (day + timedelta(days=3)).isoformat(),
    ]
    assert response.as_of_time.seconds > 0

    # A reservation alone rewrites only its screening's seats: still the domain's bytes.
    later = Catalog()
    later._time = catalog._time
    second = h.new_id()
    later.add(second, ev.ReservationChanged(second, "c2", ev.RESERVATION_CONFIRMED, s3, ("B1",), movie_id=drama))
    later._versions[reservation_id] = 1  # its confirmation was version 1
    later.add(reservation_id, ev.ReservationChanged(reservation_id, "c1", ev.RESERVATION_CANCELLED, s1, ("A1",)))
    for plan in later.plans:
        assert await store.apply(plan) == "applied"
    documents = await store.board_documents()
    expected = views.board(documents.movies, documents.screenings, documents.taken, documents.reviews, NOW_MS)
    response, page = await read_page(store)
    assert page.movies == b"".join(
        grpc_api.movie_board_bytes(grpc_api.movie_message(m).SerializeToString()) for m in expected
    )
    assert [(s.screening_id, s.free_seats) for s in response.movies[1].screenings] == [(s2, 100), (s1, 100), (s3, 99)]

    # GetMovieBoard: the same entry, also for a listed movie without screenings; not for removed ones.
    for movie_id in (drama, quiet, empty):
        raw = await queries.get_movie_board(store, movie_id, clock)
        mdocs = await store.movie_documents(movie_id)
        assert mdocs is not None
        view = views.movie_view(
            movie_id, mdocs.movie, mdocs.screenings, mdocs.taken, mdocs.review_count, mdocs.rating_sum, NOW_MS
        )
        assert raw == grpc_api.movie_message(view).SerializeToString()
    for missing in (gone, h.new_id()):
        with pytest.raises(errors.NotFound):
            await queries.get_movie_board(store, missing, clock)


async def test_pages_walk_the_title_order_with_every_filter(store: RedisReadModel) -> None:
    catalog = Catalog()
    today = NOW.astimezone(BERLIN).date()
    # 23:30 Berlin is still "today" there but already tomorrow in no zone east of it; 00:30 is tomorrow.
    late = datetime.combine(today, datetime.min.time(), BERLIN) + timedelta(hours=23, minutes=30)
    early = late + timedelta(hours=1)
    movies: dict[str, tuple[str, list[str], list[datetime]]] = {}
    for n in range(23):
        genres = ["drama"] if n % 3 else ["comedy", "drama"]
        starts = [late] if n % 2 else [early, early + timedelta(days=1)]
        movie_id = catalog.movie(f"Movie {n:02d}", genres)
        for start in starts:
            catalog.screening(movie_id, start, hall=f"Hall {n}")
        movies[movie_id] = (f"movie {n:02d}", genres, starts)
    await catalog.apply(store)
    by_title = sorted(movies, key=lambda m: (movies[m][0], m))

    def expected(genre: str = "", day: str = "") -> list[str]:
        return [
            m
            for m in by_title
            if (not genre or genre in movies[m][1])
            and (not day or any(s.astimezone(BERLIN).date().isoformat() == day for s in movies[m][2]))
        ]

    all_pages = await walk(store, queries.BoardFilter(), 5)
    assert [len(p) for p in all_pages] == [5, 5, 5, 5, 3]
    assert flat(all_pages) == by_title
    assert await walk(store, queries.BoardFilter(), 23) == [by_title]  # no empty trailing page
    assert await walk(store, queries.BoardFilter(genre=" COMEDY "), 3) == [
        expected("comedy")[i : i + 3] for i in range(0, len(expected("comedy")), 3)
    ]
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        iso = day.isoformat()
        assert flat(await walk(store, queries.BoardFilter(showing_on=iso), 4)) == expected(day=iso)
        pages = await walk(store, queries.BoardFilter(genre="comedy", showing_on=iso), 2)
        assert flat(pages) == expected("comedy", iso)
        # Screenings of that day only.
        response, _ = await read_page(store, queries.BoardFilter(showing_on=iso), 100)
        for movie in response.movies:
            assert movie.screenings
            assert {s.start_time.ToDatetime(UTC).astimezone(BERLIN).date() for s in movie.screenings} == {day}
    one = by_title[7]
    response, page = await read_page(store, queries.BoardFilter(movie_id=one))
    assert [m.movie_id for m in response.movies] == [one] and page.next_page_token == ""
    response, _ = await read_page(store, queries.BoardFilter(movie_id=one, genre="no-such-genre"))
    assert not response.movies
    assert flat(await walk(store, queries.BoardFilter(showing_on="2001-01-01"), 5)) == []

    # Tokens: of this list and of this filter only, readable errors otherwise.
    _, first = await read_page(store, queries.BoardFilter(), 5)
    for bad, words in (
        ("nope!", "not a page token"),
        ("eyJ4IjogMX0", "not a page token"),
        (first.next_page_token, "other filters"),
    ):
        with pytest.raises(errors.InvalidArgument) as refused:
            await read_page(store, queries.BoardFilter(genre="drama"), 5, bad)
        assert words in str(refused.value) and "page_token" in str(refused.value)
    with pytest.raises(errors.InvalidArgument, match="showing_on"):
        await read_page(store, queries.BoardFilter(showing_on="2030-02-30"))
    # A movie added while paging shows on a later page when its title sorts after the position.
    catalog2 = Catalog()
    added = catalog2.movie("Movie 99")
    catalog2.screening(added, early)
    await catalog2.apply(store)
    _, second = await read_page(store, queries.BoardFilter(), 5, first.next_page_token)
    assert second.count == 5
    assert flat(await walk(store, ALL, 100))[-1] == added


async def test_started_screenings_leave_the_page_and_a_page_stays_bounded(store: RedisReadModel) -> None:
    catalog = Catalog()
    over = [catalog.movie(f"A past {n:03d}") for n in range(300)]
    for movie_id in over:
        catalog.screening(movie_id, NOW - timedelta(hours=1))
    showing = catalog.movie("B showing")
    catalog.screening(showing, NOW + timedelta(hours=1))
    await catalog.apply(store)
    pages = await walk(store, queries.BoardFilter(), 10)
    # Each page looks at no more than SCAN_FACTOR x size + SCAN_SLACK positions: short pages with
    # a token until the movies that still show.
    assert flat(pages) == [showing]
    assert len(pages) == -(-301 // (queries.SCAN_FACTOR * 10 + queries.SCAN_SLACK))


async def test_movies_whose_screenings_all_started_leave_the_all_days_indexes(
    store: RedisReadModel, redis_client: aioredis.Redis
) -> None:
    now = datetime.now(UTC)
    catalog = Catalog(zone=UTC)
    soon, later, over = catalog.movie("Soon over"), catalog.movie("Later"), catalog.movie("Long over")
    catalog.screening(soon, now + timedelta(minutes=5))
    catalog.screening(later, now + timedelta(hours=3))
    catalog.screening(over, now - timedelta(hours=1))
    await catalog.apply(store)
    base = f"{store.prefix}:g{await store.live_generation()}:"

    async def members(key: str) -> set[str]:
        found: list[bytes] = await redis_client.zrange(base + key, 0, -1)  # type: ignore[assignment]  # bytes: no decode_responses
        return {m.decode().rsplit("\0", 1)[1] for m in found}

    day = now.date().isoformat()
    assert await members("ix:all") == await members("ix:g:drama") == {soon, later}  # over: never in
    assert over in await members(f"ix:d:{day}")
    assert await store.prune(_ms(now)) == 0
    # Ten minutes on, "Soon over" has nothing to come: off the all-days indexes, still on its day's.
    assert await store.prune(_ms(now + timedelta(minutes=10))) == 1
    assert await members("ix:all") == await members("ix:g:drama") == {later}
    assert soon in await members(f"ix:d:{day}")
    assert await store.prune(_ms(now + timedelta(minutes=10))) == 0  # done once
    # A new screening brings it back.
    again = Catalog(zone=UTC)
    again.screening(soon, now + timedelta(days=1))
    await again.apply(store)
    assert await members("ix:all") == {soon, later}


def page_of(store: RedisReadModel, size: int) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return await read_page(store, ALL, size)

    return call


def whole_board(store: RedisReadModel) -> Callable[[], Awaitable[object]]:
    """GetBoard as it was before the materialised entries: every document read, the board
    assembled by the domain and serialized by the generated classes, per request."""

    async def call() -> object:
        d = await store.board_documents()
        shown = views.board(d.movies, d.screenings, d.taken, d.reviews, NOW_MS)
        return board_pb2.GetBoardResponse(movies=[grpc_api.movie_message(v) for v in shown]).SerializeToString()

    return call


async def _cpu_per_call(call: Callable[[], Awaitable[object]], calls: int = 5) -> float:
    """CPU milliseconds of this process (the service's side: client, assembly, serialization) per call."""
    await call()
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1000


async def _commands_of_one_page(
    store: RedisReadModel, client: aioredis.Redis, filters: queries.BoardFilter, size: int
) -> tuple[int, int, float]:
    """Redis commands (scripts' own included) and bytes of one page read; CPU-free of other work."""
    await read_page(store, filters, size)  # the script is loaded (EVALSHA) and warm
    await client.config_resetstat()
    started = time.perf_counter()
    _, page = await read_page(store, filters, size)
    elapsed = time.perf_counter() - started
    stats = await client.info("commandstats")
    calls = sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config") and isinstance(value, dict)
    )
    return calls, len(page.movies), elapsed


async def test_a_page_costs_the_same_with_10_or_1000_movies(
    redis_client: aioredis.Redis, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    results: dict[int, dict[str, tuple[int, int, float]]] = {}
    cpu: dict[int, tuple[float, float]] = {}
    for count in (10, 1000):
        store = RedisReadModel(redis_client, f"{prefix}-{count}")
        await store.ensure_initialised()
        catalog = Catalog()
        for n in range(count):
            movie_id = catalog.movie(f"Movie {n:04d}", ("drama", "comedy") if n % 2 else ("drama",))
            for days_ahead in range(3):
                for slot in (14, 20):
                    catalog.screening(movie_id, NOW + timedelta(days=days_ahead, hours=slot - 10))
        await catalog.apply(store)
        day = (NOW + timedelta(days=1)).astimezone(BERLIN).date().isoformat()
        results[count] = {
            "first page": await _commands_of_one_page(store, redis_client, queries.BoardFilter(), 10),
            "day + genre": await _commands_of_one_page(
                store, redis_client, queries.BoardFilter(genre="comedy", showing_on=day), 5
            ),
            "one movie": await _commands_of_one_page(
                store, redis_client, queries.BoardFilter(movie_id=catalog.plans[0].aggregate.split(":")[1]), 10
            ),
        }
        cpu[count] = (await _cpu_per_call(page_of(store, 24)), await _cpu_per_call(whole_board(store)))
        await store.drop_generation(await store.live_generation())
    with capsys.disabled():
        for name in results[10]:
            small, large = results[10][name], results[1000][name]
            print(
                f"\n{name}: 10 movies {small[0]} Redis commands, {small[1]:,} bytes, {small[2] * 1000:.2f} ms; "
                f"1,000 movies {large[0]} commands, {large[1]:,} bytes, {large[2] * 1000:.2f} ms"
            )
        for count, (page_ms, whole_ms) in cpu.items():
            print(
                f"{count:,} movies x 6 screenings: this process's CPU per call {page_ms:.2f} ms for a page of 24, "
                f"{whole_ms:.2f} ms for the whole board assembled per request (the path before the entries)"
            )
    assert cpu[1000][0] < cpu[1000][1]
    for name in results[10]:
        small, large = results[10][name], results[1000][name]
        assert small[0] == large[0], name  # the same Redis commands, whatever the catalog
        assert abs(small[1] - large[1]) <= small[1] // 10, name  # and (titles aside) the same bytes
        assert large[2] < 1.0  # generous: one page is milliseconds, the whole board was not


@pytest.fixture
async def stub(settings: ViewpageSettings, js: JetStreamContext) -> AsyncIterator[BoardServiceAsyncStub]:
    app = ViewpageApp(settings.model_copy(update={"time_zone": "Europe/Berlin"}))
    async with app.host() as host, grpc.aio.insecure_channel(host.address) as channel:
        yield board_pb2_grpc.BoardServiceStub(channel)


async def test_grpc_pages_defaults_limits_and_errors(stub: BoardServiceAsyncStub, js: JetStreamContext) -> None:
    movie_ids = [h.new_id() for _ in range(60)]
    start = datetime.now(UTC) + timedelta(days=2)
    await h.publish_all(
        js,
        [h.movie_registered(m, f"Film {n:02d}") for n, m in enumerate(movie_ids)]
        + [h.screening_scheduled(h.new_id(), m, start=start) for m in movie_ids],
    )

    async def all_listed() -> bool:
        response = await stub.GetBoard(board_pb2.GetBoardRequest(page_size=100))
        return len(response.movies) == 60

    await eventually(all_listed)
    first = await stub.GetBoard(board_pb2.GetBoardRequest())
    assert len(first.movies) == queries.DEFAULT_BOARD_PAGE_SIZE and first.next_page_token
    assert first.time_zone == "Europe/Berlin"
    assert list(first.days) == [start.astimezone(BERLIN).date().isoformat()]
    rest = await stub.GetBoard(board_pb2.GetBoardRequest(page_token=first.next_page_token))
    assert len(rest.movies) == 10 and not rest.next_page_token
    titles = [m.title for m in first.movies] + [m.title for m in rest.movies]
    assert titles == sorted(titles) and len(set(titles)) == 60
    by_day = await stub.GetBoard(board_pb2.GetBoardRequest(showing_on=first.days[0], page_size=100))
    assert len(by_day.movies) == 60
    one = await stub.GetBoard(board_pb2.GetBoardRequest(movie_id=movie_ids[3]))
    assert [m.title for m in one.movies] == ["Film 03"]
    movie = await stub.GetMovieBoard(board_pb2.GetMovieBoardRequest(movie_id=movie_ids[3]))
    assert movie.movie == one.movies[0]

    for request, field in (
        (board_pb2.GetBoardRequest(page_size=101), "page_size"),
        (board_pb2.GetBoardRequest(page_size=-1), "page_size"),
        (board_pb2.GetBoardRequest(page_token="garbage"), "page_token"),
        (board_pb2.GetBoardRequest(page_token=first.next_page_token, genre="drama"), "page_token"),
        (board_pb2.GetBoardRequest(showing_on="tomorrow"), "showing_on"),
        (board_pb2.GetBoardRequest(showing_on="2030-02-30"), "showing_on"),
        (board_pb2.GetBoardRequest(movie_id="not-a-uuid"), "movie_id"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetBoard(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert field in (refused.value.details() or ""), refused.value.details()
