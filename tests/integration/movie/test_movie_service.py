"""The movie service over gRPC on FerretDB and NATS: catalog writes and reads, roles, validation,
the hall rule under concurrency, deletion cascading to screenings, events in per-aggregate order,
and the indexes behind every query."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from nats.js.client import JetStreamContext
from pymongo.asynchronous.database import AsyncDatabase

from cinema.common.v1 import actor_pb2
from cinema.movie.v1 import events_pb2 as movie_events
from cinema.movie.v1 import movie_pb2 as pb
from cinema.movie.v1 import movie_pb2_grpc
from services.kit.grpc_errors import find_detail
from services.movie.adapters import mongo
from tests.integration.movie.helpers import (
    BASE,
    Metadata,
    bad_fields,
    catalog_events,
    create_movie,
    new_hall,
    schedule,
    screening_request,
    stamp,
)

pytestmark = pytest.mark.integration


async def test_register_read_update_list(stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata) -> None:
    movie = await create_movie(stub, manager, title="Nosferatu", minutes=94, genres=("horror", "silent"))
    assert movie.id and movie.review_count == 0 and movie.create_time.seconds > 0

    anonymous = await stub.GetMovie(pb.GetMovieRequest(movie_id=movie.id))  # reads are public
    assert anonymous.movie.title == "Nosferatu"

    updated = await stub.UpdateMovie(
        pb.UpdateMovieRequest(
            movie=pb.Movie(id=movie.id, title="Nosferatu (1922)", duration_minutes=0),
            update_mask=FieldMask(paths=["title"]),
        ),
        metadata=manager,
    )
    assert updated.movie.title == "Nosferatu (1922)"
    assert updated.movie.duration_minutes == 94  # not in the mask

    listed = await stub.ListMovies(pb.ListMoviesRequest(genre="silent"))
    assert movie.id in [m.id for m in listed.movies]
    assert all("silent" in m.genres for m in listed.movies)


async def test_list_movies_pages_by_title(stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata) -> None:
    genre = f"g{id(stub) % 100000}"
    titles = [f"Paged {i:02d}" for i in range(7)]
    for title in reversed(titles):
        await create_movie(stub, manager, title=title, genres=(genre,))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListMovies(pb.ListMoviesRequest(genre=genre, page_size=3, page_token=token))
        seen += [m.title for m in page.movies]
        token = page.next_page_token
        if not token:
            break
    assert seen == titles
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListMovies(pb.ListMoviesRequest(page_token="garbage!"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_showing_on_a_date(stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata) -> None:
    showing = await create_movie(stub, manager, title="Showing")
    other = await create_movie(stub, manager, title="Not showing")
    day = BASE + timedelta(days=7)
    await schedule(stub, manager, showing.id, new_hall(), day.replace(hour=20))
    listed = await stub.ListMovies(pb.ListMoviesRequest(showing_on=day.date().isoformat(), page_size=100))
    ids = [m.id for m in listed.movies]
    assert showing.id in ids and other.id not in ids
    next_day = await stub.ListMovies(pb.ListMoviesRequest(showing_on=(day + timedelta(days=1)).date().isoformat()))
    assert showing.id not in [m.id for m in next_day.movies]


async def test_roles(stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, customer: Metadata) -> None:
    request = pb.CreateMovieRequest(movie=pb.Movie(title="Forbidden", duration_minutes=90))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateMovie(request, metadata=customer)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateMovie(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    movie = await create_movie(stub, manager)
    for call in (
        stub.DeleteMovie(pb.DeleteMovieRequest(movie_id=movie.id), metadata=customer),
        stub.ScheduleScreening(screening_request(movie.id, new_hall(), BASE), metadata=customer),
        stub.UpdateMovie(
            pb.UpdateMovieRequest(movie=pb.Movie(id=movie.id, title="x"), update_mask=FieldMask(paths=["title"])),
            metadata=customer,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("movie", "field"),
    [
        (pb.Movie(title="", duration_minutes=90), "movie.title"),
        (pb.Movie(title="Runtime", duration_minutes=-5), "movie.duration_minutes"),
        (pb.Movie(title="Poster", duration_minutes=90, poster_url="not a url"), "movie.poster_url"),
    ],
)
async def test_bad_movie_is_invalid_argument_naming_the_field(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, movie: pb.Movie, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateMovie(pb.CreateMovieRequest(movie=movie), metadata=manager)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in bad_fields(caught.value)


async def test_bad_update_is_validated_after_merging(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    movie = await create_movie(stub, manager)
    for patch, mask, field in (
        (pb.Movie(id=movie.id, title=""), ["title"], "movie.title"),
        (pb.Movie(id=movie.id, duration_minutes=-1), ["duration_minutes"], "movie.duration_minutes"),
        (pb.Movie(id=movie.id, review_count=9), ["review_count"], "update_mask"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UpdateMovie(
                pb.UpdateMovieRequest(movie=patch, update_mask=FieldMask(paths=mask)), metadata=manager
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_fields(caught.value), caught.value.details()


async def test_bad_screening_is_invalid_argument_naming_the_field(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    movie = await create_movie(stub, manager)
    for request, field in (
        (screening_request(movie.id, new_hall(), BASE, rows=0), "screening.seat_map.rows"),
        (screening_request(movie.id, new_hall(), BASE, currency=""), "screening.price.currency_code"),
        (screening_request(movie.id, "", BASE), "screening.hall"),
        (screening_request(movie.id, new_hall(), BASE - timedelta(days=60)), "screening.start_time"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ScheduleScreening(request, metadata=manager)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_fields(caught.value), caught.value.details()


async def test_overlap_in_a_hall_counts_runtime_and_cleaning_gap(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    movie = await create_movie(stub, manager, minutes=120)  # with the 15 min gap: hall busy 135 min
    hall = new_hall()
    first = await schedule(stub, manager, movie.id, hall, BASE)
    assert first.state == pb.SCREENING_STATE_SCHEDULED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedule(stub, manager, movie.id, hall, BASE + timedelta(minutes=130))  # during the cleaning
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = find_detail(caught.value, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "SCREENING_OVERLAP"
    assert info.metadata["conflicting_screening_id"] == first.id
    await schedule(stub, manager, movie.id, hall, BASE + timedelta(minutes=135))  # right after it
    await schedule(stub, manager, movie.id, new_hall(), BASE + timedelta(minutes=30))  # another hall

    # Moving a screening onto another one is refused too, and leaves it where it was.
    third = await schedule(stub, manager, movie.id, hall, BASE + timedelta(hours=6))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RescheduleScreening(
            pb.RescheduleScreeningRequest(screening_id=third.id, start_time=stamp(BASE + timedelta(minutes=60))),
            metadata=manager,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    unchanged = await stub.GetScreening(pb.GetScreeningRequest(screening_id=third.id))
    assert unchanged.screening.start_time == third.start_time

    # A cancelled screening frees its hall.
    await stub.CancelScreening(pb.CancelScreeningRequest(screening_id=first.id), metadata=manager)
    await schedule(stub, manager, movie.id, hall, BASE)


async def test_concurrent_overlapping_schedules_only_one_wins(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    movie = await create_movie(stub, manager, minutes=100)
    hall = new_hall()
    starts = [BASE + timedelta(days=2, minutes=5 * i) for i in range(12)]  # all within 100 min of each other

    async def attempt(i: int) -> grpc.StatusCode:
        try:
            await stub.ScheduleScreening(screening_request(movie.id, hall, starts[i]), metadata=manager)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(attempt(i) for i in range(len(starts))))
    assert codes.count(grpc.StatusCode.OK) == 1, codes
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}, codes
    listed = await stub.ListScreenings(pb.ListScreeningsRequest(movie_id=movie.id))
    assert len([s for s in listed.screenings if s.hall == hall]) == 1

    # Non-overlapping ones in one hall, all at once: all pass.
    spaced = [BASE + timedelta(days=3, hours=2 * i) for i in range(6)]
    other_hall = new_hall()
    await asyncio.gather(*(schedule(stub, manager, movie.id, other_hall, start) for start in spaced))


async def test_list_screenings_earliest_first_with_pages(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    movie = await create_movie(stub, manager, minutes=60)
    hall = new_hall()
    starts = [BASE + timedelta(days=4, hours=3 * i) for i in range(5)]
    ids = [(await schedule(stub, manager, movie.id, hall, start)).id for start in reversed(starts)]
    await stub.CancelScreening(pb.CancelScreeningRequest(screening_id=ids[0], reason="x"), metadata=manager)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListScreenings(pb.ListScreeningsRequest(movie_id=movie.id, page_size=2, page_token=token))
        seen += [s.id for s in page.screenings]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids[1:]))  # earliest first, the cancelled (latest) one left out
    everything = await stub.ListScreenings(pb.ListScreeningsRequest(movie_id=movie.id, show_cancelled=True))
    assert len(everything.screenings) == 5


async def test_deleting_a_movie_cancels_its_future_screenings(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, js: JetStreamContext
) -> None:
    movie = await create_movie(stub, manager, title="Withdrawn")
    screenings = [await schedule(stub, manager, movie.id, new_hall(), BASE + timedelta(days=d)) for d in (1, 2, 3)]
    await stub.DeleteMovie(pb.DeleteMovieRequest(movie_id=movie.id), metadata=manager)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetMovie(pb.GetMovieRequest(movie_id=movie.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    for s in screenings:
        got = await stub.GetScreening(pb.GetScreeningRequest(screening_id=s.id))
        assert got.screening.state == pb.SCREENING_STATE_CANCELLED

    ids = {movie.id, *(s.id for s in screenings)}
    events = await catalog_events(js, ids, expected=1 + 3 + 3)
    cancelled = [e for _, e in events if isinstance(e, movie_events.ScreeningCancelled)]
    assert sorted(c.screening_id for c in cancelled) == sorted(s.id for s in screenings)
    assert all(c.movie_id == movie.id and c.reason for c in cancelled)
    [deleted] = [e for _, e in events if isinstance(e, movie_events.MovieDeleted)]
    # Who did it: the manager deleted the movie; the system cancelled its screenings for that.
    assert (deleted.deleted_by.kind, deleted.deleted_by.id) == (actor_pb2.ACTOR_KIND_MANAGER, "manager-1")
    assert {(c.cancelled_by.kind, c.cancelled_by.cause) for c in cancelled} == {
        (actor_pb2.ACTOR_KIND_SYSTEM, "MOVIE_WITHDRAWN")
    }
    # A new screening for the deleted movie is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await schedule(stub, manager, movie.id, new_hall(), BASE + timedelta(days=9))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_events_reach_jetstream_in_per_aggregate_order(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata, js: JetStreamContext
) -> None:
    movie = await create_movie(stub, manager, title="Ordered")
    for i in range(3):
        await stub.UpdateMovie(
            pb.UpdateMovieRequest(
                movie=pb.Movie(id=movie.id, title=f"Ordered {i}"), update_mask=FieldMask(paths=["title"])
            ),
            metadata=manager,
        )
    hall = new_hall()
    screening = await schedule(stub, manager, movie.id, hall, BASE + timedelta(days=5))
    for hours in (2, 4):
        await stub.RescheduleScreening(
            pb.RescheduleScreeningRequest(
                screening_id=screening.id, start_time=stamp(BASE + timedelta(days=5, hours=hours)), hall=new_hall()
            ),
            metadata=manager,
        )
    await stub.CancelScreening(pb.CancelScreeningRequest(screening_id=screening.id), metadata=manager)

    events = await catalog_events(js, {movie.id, screening.id}, expected=4 + 4)
    by_aggregate: dict[str, list[tuple[int, str]]] = {}
    for envelope, event in events:
        by_aggregate.setdefault(envelope.aggregate_id, []).append((envelope.aggregate_version, type(event).__name__))
    assert by_aggregate[movie.id] == [
        (1, "MovieRegistered"),
        (2, "MovieUpdated"),
        (3, "MovieUpdated"),
        (4, "MovieUpdated"),
    ]
    assert by_aggregate[screening.id] == [
        (1, "ScreeningScheduled"),
        (2, "ScreeningRescheduled"),
        (3, "ScreeningRescheduled"),
        (4, "ScreeningCancelled"),
    ]
    rescheduled = [e for _, e in events if isinstance(e, movie_events.ScreeningRescheduled)]
    assert rescheduled[1].previous_hall == rescheduled[0].hall
    assert all(envelope.subject == envelope.aggregate_id for envelope, _ in events)
    [cancelled] = [e for _, e in events if isinstance(e, movie_events.ScreeningCancelled)]
    assert (cancelled.cancelled_by.kind, cancelled.cancelled_by.id) == (actor_pb2.ACTOR_KIND_MANAGER, "manager-1")


async def test_retried_create_with_a_request_id_returns_the_first_result(
    stub: movie_pb2_grpc.MovieServiceAsyncStub, manager: Metadata
) -> None:
    request = pb.CreateMovieRequest(movie=pb.Movie(title="Once", duration_minutes=90), request_id=str(uuid.uuid4()))
    first = await stub.CreateMovie(request, metadata=manager)
    again = await stub.CreateMovie(request, metadata=manager)
    assert first.movie.id == again.movie.id
    schedule_request = screening_request(first.movie.id, new_hall(), BASE + timedelta(days=6))
    schedule_request.request_id = str(uuid.uuid4())
    one = await stub.ScheduleScreening(schedule_request, metadata=manager)
    two = await stub.ScheduleScreening(schedule_request, metadata=manager)
    assert one.screening.id == two.screening.id


async def test_every_query_is_covered_by_an_index(
    db: AsyncDatabase[Mapping[str, Any]], stub: movie_pb2_grpc.MovieServiceAsyncStub
) -> None:
    """Lists the indexes of each collection and checks that each query's fields are an index prefix."""
    existing: dict[str, list[tuple[str, ...]]] = {}
    for collection in mongo.QUERIES:
        info = await db[collection].index_information()
        existing[collection] = [tuple(field for field, _ in spec["key"]) for spec in info.values()]
    print("indexes:", existing)  # the list the issue asks to see
    for collection, queries in mongo.QUERIES.items():
        for fields in queries:
            assert any(index[: len(fields)] == fields for index in existing[collection]), (collection, fields)
