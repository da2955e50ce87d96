"""Use cases of the read side: the board, one movie's board, a customer's reservations."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, tzinfo

from services.kit import errors
from services.kit.caller import Caller, require_authenticated
from services.viewpage.domain import board as views
from services.viewpage.domain.projection import day_of, genre_key
from services.viewpage.service_layer.ports import ReadModelStore

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# The board's pages: the same default and maximum as the other lists of the API.
DEFAULT_BOARD_PAGE_SIZE = 50
MAX_BOARD_PAGE_SIZE = 100
# Index positions one page may look at, per movie asked for: movies whose screenings have all
# started stay in the indexes (nothing happens when a screening starts) and show nothing; the
# bound keeps a page's cost O(page size) however many such movies there are (the page is then
# shorter, and `next_page_token` continues after them).
SCAN_FACTOR = 4
SCAN_SLACK = 16
MAX_DAYS = 31  # `days`: a month of the day picker


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class BoardFilter:
    """What GetBoard narrows the board to; a page token belongs to one filter."""

    genre: str = ""
    showing_on: str = ""  # YYYY-MM-DD in the cinema's time zone
    movie_id: str = ""

    def fingerprint(self) -> str:
        text = json.dumps([genre_key(self.genre), self.showing_on, self.movie_id])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BoardPage:
    movies: bytes  # the page as the contract's repeated `movies`, on the wire (see ports.BoardSlice)
    count: int
    next_page_token: str
    as_of_ms: int
    days: list[str]
    time_zone: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")  # no '=': nothing to escape in a URL


def _b64decode(token: str) -> bytes:
    return base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode())


def encode_board_token(position: str, filters: BoardFilter) -> str:
    return _b64encode(json.dumps({"b": filters.fingerprint(), "k": position}, ensure_ascii=False).encode())


def _encodable(text: str) -> bool:
    # JSON may carry lone surrogates, which no UTF-8 key (nor Redis) can hold.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def decode_board_token(token: str, filters: BoardFilter) -> str:
    """The index position a token continues after ('' for no token)."""
    if not token:
        return ""
    try:
        content = json.loads(_b64decode(token))
        fingerprint, position = content["b"], content["k"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.InvalidArgument.for_field("page_token", "not a page token of the board") from None
    if not isinstance(position, str) or not isinstance(fingerprint, str) or not _encodable(position):
        raise errors.InvalidArgument.for_field("page_token", "not a page token of the board")
    if fingerprint != filters.fingerprint():
        raise errors.InvalidArgument.for_field(
            "page_token",
            "belongs to a request with other filters: send the same genre, showing_on and movie_id "
            "as the request that returned it, or no token to start over",
        )
    return position


def parse_day(showing_on: str) -> str:
    if not showing_on:
        return ""
    try:
        return date.fromisoformat(showing_on).isoformat()
    except ValueError:
        raise errors.InvalidArgument.for_field("showing_on", f"{showing_on!r} is not a date (YYYY-MM-DD)") from None


async def get_board(
    store: ReadModelStore,
    filters: BoardFilter = BoardFilter(),
    page_size: int = 0,
    page_token: str = "",
    *,
    zone: tzinfo = UTC,
    zone_name: str = "UTC",
    clock: Callable[[], int] = now_ms,
) -> BoardPage:
    """A page of the board: movies by title with their screenings to come (on one day if asked).

    O(page size) whatever the size of the catalog: the store slices entries it materialised when
    their events arrived. Pages are positions in the title order, so a movie added while paging
    shows on a later page if its title sorts after the position, and none repeats.
    """
    if page_size < 0:
        raise errors.InvalidArgument.for_field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_BOARD_PAGE_SIZE, MAX_BOARD_PAGE_SIZE)
    day = parse_day(filters.showing_on)
    after = decode_board_token(page_token, filters)
    now = clock()
    found = await store.board_slice(
        genre=genre_key(filters.genre),
        after=after,
        size=size,
        now_ms=now,
        day=day,
        scan_limit=SCAN_FACTOR * size + SCAN_SLACK,
        today=day_of(now, zone),
        movie_id=filters.movie_id,
        max_days=MAX_DAYS,
    )
    token = encode_board_token(found.last, filters) if found.more and not filters.movie_id else ""
    return BoardPage(found.movies, found.count, token, found.as_of_ms, found.days, zone_name)


async def get_movie_board(store: ReadModelStore, movie_id: str, clock: Callable[[], int] = now_ms) -> bytes:
    """One movie's entry with its screenings to come (`BoardMovie` on the wire)."""
    entry = await store.movie_entry(movie_id, clock())
    if entry is None:
        raise errors.NotFound("movie", movie_id, f"movie {movie_id} is not on the board")
    return entry


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
