"""The board's pure side: what each event plans to change, and how reads are assembled."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from services.kit import errors
from services.viewpage.domain import board
from services.viewpage.domain import events as ev
from services.viewpage.domain.projection import HINT_VERSION, Share, plan_for
from services.viewpage.service_layer.queries import (
    BoardFilter,
    decode_board_token,
    decode_page_token,
    encode_board_token,
    encode_page_token,
)

META = ev.EventMeta("agg", 3, 1_700_000_000_123)


def test_a_confirmed_reservation_contributes_its_seats_and_a_cancelled_one_nothing() -> None:
    confirmed = ev.ReservationChanged("r1", "c1", ev.RESERVATION_CONFIRMED, "s1", ("A1", "A2"), hall="H")
    cancelled = ev.ReservationChanged("r1", "c1", ev.RESERVATION_CANCELLED, "s1", ("A1", "A2"))
    assert plan_for(confirmed, META).contribution == (Share("taken", "s1", 2),)
    assert plan_for(cancelled, META).contribution == ()
    # A cancellation names no hall: the plan leaves the confirmation's hall alone.
    assert "hall" not in plan_for(cancelled, META).merges[0].fields
    assert plan_for(cancelled, META).aggregate == "reservation:r1"


def test_reviews_contribute_count_and_rating_keyed_by_review() -> None:
    posted = plan_for(ev.ReviewPosted("v1", "m1", 4), META)
    assert posted.aggregate == "review:v1"
    assert posted.contribution == (Share("reviews", "m1:n", 1), Share("reviews", "m1:sum", 4))
    assert plan_for(ev.ReviewDeleted("v1", "m1"), META).contribution == ()


def test_movie_events_change_documents_only_and_screenings_hint_the_title() -> None:
    details = plan_for(ev.MovieDetailsChanged("m1", "T", ("drama",), 90, ""), META)
    assert details.contribution is None
    assert details.merges[0].fields["title"] == "T"
    scheduled = plan_for(ev.ScreeningScheduled("s1", "m1", "T", 90, "H", 5, 100, 1200, "EUR"), META)
    hint = scheduled.merges[1]
    assert (hint.collection, hint.version, hint.fields["title"]) == ("movies", HINT_VERSION, "T")
    assert scheduled.as_json()["members"] == [["set", "movie_screenings:m1", "s1"]]


def _screening(movie_id: str, start: int, **extra: object) -> dict[str, object]:
    return {"movie_id": movie_id, "hall": "H", "start_time_ms": start, "total_seats": 100, **extra}


def test_board_lists_movies_with_screenings_to_come_with_free_seats_and_ratings() -> None:
    movies: dict[str, dict[str, Any]] = {
        "m1": {"title": "b", "genres": ["Drama"]},
        "m2": {"title": "a", "genres": {}},  # cjson's empty array
        "m3": {"title": "gone", "deleted": True},
        "m4": {"title": "no screenings"},
    }
    screenings: dict[str, dict[str, Any]] = {
        "s1": _screening("m1", 2000),
        "s2": _screening("m1", 500),  # over
        "s3": _screening("m2", 3000),
        "s4": _screening("m2", 4000, cancelled=True),
        "s5": _screening("m3", 3000),
        "s6": {"movie_id": "m4", "hall": "H", "start_time_ms": 3000},  # never scheduled
    }
    shown = board.board(movies, screenings, {"s1": 30}, {"m1:n": 2, "m1:sum": 7}, now_ms=1000)
    assert [m.movie_id for m in shown] == ["m2", "m1"]
    m1 = shown[1]
    assert [(s.screening_id, s.free_seats) for s in m1.screenings] == [("s1", 70)]
    assert (m1.review_count, m1.average_rating) == (2, 3.5)
    assert shown[0].genres == ()
    assert [m.movie_id for m in board.board(movies, screenings, {}, {}, 1000, genre="drama")] == ["m1"]


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    assert decode_page_token(encode_page_token(40)) == 40
    assert decode_page_token("") == 0
    for bad in ("nope!", encode_page_token(-1), "eyJ4IjogMX0="):
        with pytest.raises(errors.InvalidArgument):
            decode_page_token(bad)


def test_board_page_tokens_belong_to_one_filter_and_reject_garbage() -> None:
    drama = BoardFilter(genre="Drama", showing_on="2030-03-07")
    token = encode_board_token("ärger\0id-1", drama)
    assert "=" not in token  # nothing to escape in a URL
    assert decode_board_token(token, BoardFilter(genre=" drama ", showing_on="2030-03-07")) == "ärger\0id-1"
    assert decode_board_token("", drama) == ""
    forged = base64.urlsafe_b64encode(json.dumps({"b": drama.fingerprint(), "k": "\ud800"}).encode()).decode()
    for bad in ("nope!", "e30", forged, encode_board_token("x", BoardFilter())):
        with pytest.raises(errors.InvalidArgument):
            decode_board_token(bad, drama)
