"""The Movie aggregate: registration rules, field-mask updates, deletion, events and versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument
from services.movie.domain.events import MovieDeleted, MovieRegistered, MovieUpdated
from services.movie.domain.movie import Movie, MovieDetails

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
METROPOLIS = MovieDetails("Metropolis", "A city of the future.", ("drama", "sci-fi"), 153, "https://x.test/m.jpg")


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


def test_register_raises_movie_registered_at_version_1() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    assert movie.version == 1
    assert movie.pending == [
        MovieRegistered(
            "m1", 1, "Metropolis", "A city of the future.", ("drama", "sci-fi"), 153, "https://x.test/m.jpg"
        )
    ]


@pytest.mark.parametrize(
    ("details", "field"),
    [
        (MovieDetails("", duration_minutes=90), "movie.title"),
        (MovieDetails("   ", duration_minutes=90), "movie.title"),
        (MovieDetails("x" * 201, duration_minutes=90), "movie.title"),
        (MovieDetails("T", duration_minutes=-1), "movie.duration_minutes"),
        (MovieDetails("T", duration_minutes=0), "movie.duration_minutes"),
        (MovieDetails("T", duration_minutes=601), "movie.duration_minutes"),
        (MovieDetails("T", genres=("a", "a"), duration_minutes=90), "movie.genres"),
        (MovieDetails("T", genres=("",), duration_minutes=90), "movie.genres[0]"),
        (MovieDetails("T", duration_minutes=90, poster_url="not a url"), "movie.poster_url"),
    ],
)
def test_invalid_details_name_the_field(details: MovieDetails, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Movie.register("m1", details, NOW)
    assert field in fields(caught.value)


def test_field_mask_update_changes_only_the_named_fields() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    movie.pending.clear()
    later = NOW + timedelta(hours=1)
    changed = movie.update({"title": "Metropolis (restored)", "duration_minutes": 0}, ["title"], later)
    assert changed
    assert movie.details.title == "Metropolis (restored)"
    assert movie.details.duration_minutes == 153  # not in the mask: untouched, though the patch says 0
    assert movie.version == 2 and movie.updated_at == later
    (event,) = movie.pending
    assert isinstance(event, MovieUpdated) and event.version == 2 and event.changed == ("title",)
    assert event.duration_minutes == 153  # the full new state rides along


def test_field_mask_update_can_clear_a_field() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    movie.update({"poster_url": "", "genres": ()}, ["poster_url", "genres"], NOW)
    assert movie.details.poster_url == "" and movie.details.genres == ()


def test_update_that_changes_nothing_raises_no_event_and_keeps_the_version() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    movie.pending.clear()
    assert not movie.update({"title": "Metropolis"}, ["title"], NOW)
    assert movie.version == 1 and movie.pending == []


def test_merged_movie_is_validated() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    with pytest.raises(InvalidArgument) as caught:
        movie.update({"title": ""}, ["title"], NOW)
    assert fields(caught.value) == {"movie.title"}
    assert movie.details == METROPOLIS  # unchanged


@pytest.mark.parametrize("mask", [[], ["review_count"], ["id"], ["title", "nope"]])
def test_mask_must_name_editable_fields(mask: list[str]) -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    with pytest.raises(InvalidArgument) as caught:
        movie.update({"title": "x", "review_count": 3, "id": "y", "nope": 1}, mask, NOW)
    assert fields(caught.value) == {"update_mask"}


def test_delete_once_then_no_more_updates() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    movie.pending.clear()
    assert movie.delete(NOW, Actor.manager("manager-1"))
    assert movie.pending == [MovieDeleted("m1", 2, "Metropolis", Actor.manager("manager-1"))]
    assert not movie.delete(NOW, Actor.manager("manager-1"))  # a second delete: nothing new
    assert movie.version == 2
    with pytest.raises(FailedPrecondition):
        movie.update({"title": "x"}, ["title"], NOW)


def test_average_rating() -> None:
    movie = Movie.register("m1", METROPOLIS, NOW)
    assert movie.average_rating == 0.0
    movie.review_count, movie.rating_sum = 3, 11
    assert movie.average_rating == pytest.approx(11 / 3)
