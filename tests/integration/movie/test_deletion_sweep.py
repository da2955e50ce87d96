"""The deletion sweep on FerretDB: a movie deletion cut short (the movie saved as deleted, its
screenings not yet cancelled) is finished by `sweep_deleted_movies`, which finds it through the
notes in `deletions_to_finish` (O(unfinished deletions)) instead of scanning the movies: after
the first sweep of a process (one scan, for flags older than the notes) it reads movies by `_id`
only. A note whose deletion never applied goes once it is stale."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from services.kit.actor import Actor
from services.movie.adapters import mongo
from services.movie.domain.movie import MovieDetails
from services.movie.domain.screening import ScreeningState
from services.movie.domain.values import Money, SeatMap
from services.movie.service_layer.catalog import create_movie, sweep_deleted_movies
from services.movie.service_layer.dependencies import CatalogDependencies
from services.movie.service_layer.scheduling import schedule_screening
from tests.support.servers import Server

pytestmark = pytest.mark.integration

Document = Mapping[str, Any]


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class MovieFinds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == mongo.MOVIES:
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def db_and_finds(mongo_server: Server) -> AsyncIterator[tuple[AsyncDatabase[Document], MovieFinds]]:
    finds = MovieFinds()
    # One connection, as the service runs (FerretDB v1 does not isolate concurrent updates).
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_server.url, tz_aware=True, maxPoolSize=1, event_listeners=[finds]
    )
    name = f"{mongo_server.extra['db_prefix']}moviesweep_{uuid.uuid4().hex[:8]}"
    await mongo.ensure_indexes(client[name])
    yield client[name], finds
    await client.drop_database(name)
    await client.close()


def dependencies(db: AsyncDatabase[Document]) -> CatalogDependencies:
    return CatalogDependencies(
        movies=mongo.MongoMovies(db), screenings=mongo.MongoScreenings(db), halls=mongo.MongoHalls(db), clock=Clock()
    )


async def movie_with_a_screening(deps: CatalogDependencies) -> tuple[str, str]:
    movie = await create_movie(MovieDetails(title="Cut short", duration_minutes=90), str(uuid.uuid4()), deps)
    screening = await schedule_screening(
        movie.id,
        f"hall-{uuid.uuid4().hex[:6]}",
        datetime.now(UTC) + timedelta(days=3),
        SeatMap(5, 5, ()),
        Money(900, "EUR"),
        str(uuid.uuid4()),
        deps,
    )
    return movie.id, screening.id


async def delete_without_cancelling(deps: CatalogDependencies, movie_id: str) -> None:
    """The first half of delete_movie: the process 'dies' before cancelling the screenings."""
    movie = await deps.movies.get(movie_id)
    assert movie is not None
    version = movie.version
    movie.delete(datetime.now(UTC), Actor.manager("manager-1"))
    assert await deps.movies.save(movie, version)


async def test_a_deletion_cut_short_is_finished_from_its_note(
    db_and_finds: tuple[AsyncDatabase[Document], MovieFinds],
) -> None:
    db, finds = db_and_finds
    deps = dependencies(db)
    assert await sweep_deleted_movies(deps) == 0  # the process's first sweep: its one scan
    movie_id, screening_id = await movie_with_a_screening(deps)
    await delete_without_cancelling(deps, movie_id)
    assert await db[mongo.SWEEPS].count_documents({"_id": movie_id}) == 1

    finds.filters.clear()
    assert await sweep_deleted_movies(deps) == 1
    screening = await deps.screenings.get(screening_id)
    assert screening is not None and screening.state is ScreeningState.CANCELLED
    assert await db[mongo.SWEEPS].count_documents({}) == 0
    assert (await db[mongo.MOVIES].find_one({"_id": movie_id}) or {}).get("screenings_to_cancel") is None
    assert finds.filters and all(set(f) == {"_id"} for f in finds.filters), finds.filters
    assert await sweep_deleted_movies(deps) == 0


async def test_the_first_sweep_finds_flags_without_a_note(
    db_and_finds: tuple[AsyncDatabase[Document], MovieFinds],
) -> None:
    """Flags written before the notes existed (an older version, or a lost note) are found by the
    one scan a process makes, and noted."""
    db, _ = db_and_finds
    movie_id, screening_id = await movie_with_a_screening(dependencies(db))
    await delete_without_cancelling(dependencies(db), movie_id)
    await db[mongo.SWEEPS].delete_many({})  # as if written before the notes existed

    fresh = dependencies(db)  # a new process
    assert await sweep_deleted_movies(fresh) == 1
    screening = await fresh.screenings.get(screening_id)
    assert screening is not None and screening.state is ScreeningState.CANCELLED
    assert await db[mongo.SWEEPS].count_documents({}) == 0


async def test_a_note_whose_deletion_never_applied_goes_when_stale(
    db_and_finds: tuple[AsyncDatabase[Document], MovieFinds],
) -> None:
    db, _ = db_and_finds
    deps = dependencies(db)
    movie_id, _screening_id = await movie_with_a_screening(deps)
    young = datetime.now(UTC)
    await db[mongo.SWEEPS].insert_one({"_id": movie_id, "at": young})  # its save is still in flight
    assert await deps.movies.deleted_with_screenings_to_cancel(10) == []
    assert await db[mongo.SWEEPS].count_documents({"_id": movie_id}) == 1  # kept: it may yet apply
    await db[mongo.SWEEPS].update_one({"_id": movie_id}, {"$set": {"at": young - mongo.SWEEP_NOTE_STALE * 2}})
    assert await deps.movies.deleted_with_screenings_to_cancel(10) == []
    assert await db[mongo.SWEEPS].count_documents({"_id": movie_id}) == 0
