"""The store's keyset page tokens and times (pure functions of the MongoDB adapter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.kit.errors import InvalidArgument
from services.review.adapters.mongo import decode_page_token, encode_page_token, to_millis

MOVIE = "0b6a1c8e-3f5d-4a47-9f8e-1c2d3e4f5a6b"


def test_a_token_round_trips_to_the_millisecond() -> None:
    at = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    assert decode_page_token(encode_page_token(MOVIE, at, "r-9"), MOVIE) == (at, "r-9")


def test_times_are_cut_to_milliseconds_in_utc() -> None:
    at = datetime(2026, 11, 25, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert to_millis(at) == datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize("token", ["garbage!", "W10", "WyJhIiwiYiIsImMiXQ", ""])
def test_a_token_we_did_not_issue_names_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token or "e30", MOVIE)
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_a_token_of_another_movie_is_refused() -> None:
    token = encode_page_token("another", datetime.now(UTC), "r-1")
    with pytest.raises(InvalidArgument, match="another movie"):
        decode_page_token(token, MOVIE)
