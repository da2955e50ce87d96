"""Use cases on movies: register, read, list, update by field mask, delete.

Writes are compare-and-set on the movie's version, retried a few times when another manager
wrote in between. Deleting a movie is two steps that each change one document: the movie is
marked deleted (MovieDeleted, and a flag saying its screenings are still to be cancelled), then
each of its future screenings is cancelled (ScreeningCancelled each) and the flag cleared. If
the process dies in between, the sweeper (`sweep_deleted_movies`, run at start-up and
periodically) finishes the job from the flag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from services.kit.actor import Actor
from services.kit.errors import InvalidArgument, NotFound, Unavailable
from services.movie.domain.movie import Movie, MovieDetails
from services.movie.service_layer import pages
from services.movie.service_layer.dependencies import CatalogDependencies, id_for_request
from services.movie.service_layer.ports import MovieQuery

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 5
MOVIE_WITHDRAWN = "the movie was withdrawn from the catalog"
# Who cancels the screenings of a deleted movie: the system, following the deletion.
WITHDRAWN_BY = Actor.system("MOVIE_WITHDRAWN")


@dataclass(frozen=True)
class MoviePage:
    movies: Sequence[Movie]
    next_page_token: str = ""


def _conflict(what: str) -> Unavailable:
    return Unavailable(f"{what} kept changing under this request; retry", retry_after_s=0.1, reason="WRITE_CONFLICT")


async def create_movie(details: MovieDetails, idempotency_key: str, deps: CatalogDependencies) -> Movie:
    movie = Movie.register(id_for_request("movie", idempotency_key), details, deps.clock.now())
    if await deps.movies.add(movie):
        deps.events_written()
        return movie
    existing = await deps.movies.get(movie.id)  # a retried request: its first result
    if existing is None:
        raise _conflict("the movie")
    return existing


async def get_movie(movie_id: str, deps: CatalogDependencies) -> Movie:
    movie = await deps.movies.get(movie_id)
    if movie is None or movie.deleted:
        raise NotFound("movie", movie_id)
    return movie


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.for_field("showing_on", "must be a date YYYY-MM-DD") from None


async def list_movies(
    page_size: int, page_token: str, genre: str, showing_on: str, deps: CatalogDependencies
) -> MoviePage:
    size = pages.page_size(page_size, deps.default_page_size)
    after = pages.decode(page_token, 2)
    only_ids: frozenset[str] | None = None
    if showing_on:
        zone = deps.time_zone or UTC
        start = datetime.combine(parse_day(showing_on), time(0), tzinfo=zone)
        end = start + timedelta(days=1)  # wall-clock day; a DST day is 23 or 25 hours: recompute
        end = datetime.combine(end.date(), time(0), tzinfo=zone)
        only_ids = await deps.screenings.movies_showing_between(start.astimezone(UTC), end.astimezone(UTC))
        if not only_ids:
            return MoviePage([])
    found = list(
        await deps.movies.list(
            MovieQuery(page_size=size, genre=genre, only_ids=only_ids, after=(after[0], after[1]) if after else None)
        )
    )
    if len(found) > size:
        last = found[size - 1]
        return MoviePage(found[:size], pages.encode(last.title, last.id))
    return MoviePage(found)


async def update_movie(
    movie_id: str, values: Mapping[str, object], mask: Iterable[str], deps: CatalogDependencies
) -> Movie:
    paths = list(mask)
    for _ in range(WRITE_ATTEMPTS):
        movie = await get_movie(movie_id, deps)
        loaded_version, old_title = movie.version, movie.title
        if not movie.update(values, paths, deps.clock.now()):
            return movie  # nothing changed: no event, no new version
        if await deps.movies.save(movie, loaded_version):
            deps.events_written()
            if movie.title != old_title:
                await deps.screenings.retitle(movie.id, movie.title)
            return movie
    raise _conflict(f"movie {movie_id}")


async def delete_movie(movie_id: str, deps: CatalogDependencies, *, by: Actor) -> None:
    """Delete (`by` the manager calling); its future screenings are then cancelled by the system."""
    for _ in range(WRITE_ATTEMPTS):
        movie = await get_movie(movie_id, deps)
        loaded_version = movie.version
        movie.delete(deps.clock.now(), by)
        if await deps.movies.save(movie, loaded_version):
            deps.events_written()
            break
    else:
        raise _conflict(f"movie {movie_id}")
    await cancel_screenings_of_deleted_movie(movie_id, deps)


async def cancel_screenings_of_deleted_movie(movie_id: str, deps: CatalogDependencies) -> int:
    """Cancel every future screening of a deleted movie, then clear its to-do flag; returns how many."""
    # Imported here: scheduling imports this module's get_movie.
    from services.movie.service_layer.scheduling import cancel_screening

    cancelled = 0
    for screening in await deps.screenings.scheduled_after(movie_id, deps.clock.now()):
        if await cancel_screening(screening.id, MOVIE_WITHDRAWN, deps, by=WITHDRAWN_BY, changed_only=True) is not None:
            cancelled += 1
    await deps.movies.screenings_cancelled(movie_id)
    return cancelled


async def sweep_deleted_movies(deps: CatalogDependencies, limit: int = 100) -> int:
    """Finish deletions a crash interrupted; returns how many screenings it cancelled."""
    cancelled = 0
    for movie_id in await deps.movies.deleted_with_screenings_to_cancel(limit):
        cancelled += await cancel_screenings_of_deleted_movie(movie_id, deps)
    if cancelled:
        log.info("sweeper cancelled %d screenings of deleted movies", cancelled)
    return cancelled
