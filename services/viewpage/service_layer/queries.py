"""Use cases of the read side: the board, one movie's board, a customer's reservations."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.kit import errors
from services.kit.auth import Caller, require_authenticated
from services.viewpage.domain import board as views
from services.viewpage.service_layer.ports import ReadModelStore

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Board:
    movies: list[views.MovieView]
    as_of_ms: int


async def get_board(store: ReadModelStore, genre: str = "", clock: Callable[[], int] = now_ms) -> Board:
    documents = await store.board_documents()
    movies = views.board(
        documents.movies, documents.screenings, documents.taken, documents.reviews, clock(), genre=genre
    )
    return Board(movies, documents.as_of_ms)


async def get_movie_board(store: ReadModelStore, movie_id: str, clock: Callable[[], int] = now_ms) -> views.MovieView:
    documents = await store.movie_documents(movie_id)
    if documents is None or not views.is_listed(documents.movie):
        raise errors.NotFound("movie", movie_id, f"movie {movie_id} is not on the board")
    return views.movie_view(
        movie_id,
        documents.movie,
        documents.screenings,
        documents.taken,
        documents.review_count,
        documents.rating_sum,
        clock(),
    )


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.InvalidArgument.for_field("page_token", "not a token of this list") from None
    if not isinstance(offset, int) or offset < 0:
        raise errors.InvalidArgument.for_field("page_token", "not a token of this list")
    return offset


@dataclass(frozen=True)
class ReservationPage:
    reservations: list[views.ReservationView]
    next_page_token: str


async def list_customer_reservations(
    store: ReadModelStore, caller: Caller, page_size: int = 0, page_token: str = ""
) -> ReservationPage:
    """The caller's own reservations, newest first (by when the board first saw each one).

    Pages are by position: a reservation made while paging shifts later pages by one, which
    a list of one's own bookings tolerates (a cursor would not repeat, but costs a score lookup).
    """
    customer_id = require_authenticated(caller).subject
    assert customer_id is not None
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = decode_page_token(page_token)
    page = await store.customer_page(customer_id, offset, size)
    entries = [views.reservation_view(rid, doc) for rid, doc in page.reservations]
    return ReservationPage(entries, encode_page_token(offset + size) if page.more else "")
