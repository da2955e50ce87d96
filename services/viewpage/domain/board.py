"""What the board shows, assembled from the read model's documents and counters (pure).

The store hands over the merged fields of each document and the counters; these functions
decide what a customer sees: movies that are not deleted with their screenings to come (not
cancelled), free seats = total - taken, review count and mean rating, reservations as entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Document = Mapping[str, Any]


@dataclass(frozen=True)
class ScreeningView:
    screening_id: str
    hall: str
    start_time_ms: int
    price_minor: int
    currency: str
    free_seats: int
    total_seats: int


@dataclass(frozen=True)
class MovieView:
    movie_id: str
    title: str
    genres: tuple[str, ...]
    duration_minutes: int
    poster_url: str
    review_count: int
    average_rating: float
    screenings: tuple[ScreeningView, ...]


@dataclass(frozen=True)
class ReservationView:
    reservation_id: str
    screening_id: str
    movie_id: str
    movie_title: str
    hall: str
    start_time_ms: int
    seats: tuple[str, ...]
    amount_minor: int
    currency: str
    state: str  # CONFIRMED, CANCELLED, FAILED; "" when only its payment was seen yet
    payment_state: str  # APPROVED, DECLINED, REFUNDED or ""
    update_time_ms: int


def _list(value: Any) -> tuple[str, ...]:
    # Lua's cjson turns an empty JSON array into an empty object: both mean "none".
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def screening_view(screening_id: str, doc: Document, taken: int) -> ScreeningView:
    total = int(doc.get("total_seats", 0))
    return ScreeningView(
        screening_id=screening_id,
        hall=str(doc.get("hall", "")),
        start_time_ms=int(doc.get("start_time_ms", 0)),
        price_minor=int(doc.get("price_minor", 0)),
        currency=str(doc.get("currency", "")),
        free_seats=max(0, total - taken),
        total_seats=total,
    )


def is_upcoming(doc: Document, now_ms: int) -> bool:
    """Scheduled (not merely hinted at by a reservation), not cancelled, not started."""
    return "total_seats" in doc and not doc.get("cancelled", False) and int(doc.get("start_time_ms", 0)) > now_ms


def is_listed(doc: Document) -> bool:
    return "title" in doc and not doc.get("deleted", False)


def movie_view(
    movie_id: str,
    doc: Document,
    screenings: Mapping[str, Document],
    taken: Mapping[str, int],
    review_count: int,
    rating_sum: int,
    now_ms: int,
) -> MovieView:
    upcoming = sorted(
        (
            screening_view(sid, sdoc, taken.get(sid, 0))
            for sid, sdoc in screenings.items()
            if sdoc.get("movie_id") == movie_id and is_upcoming(sdoc, now_ms)
        ),
        key=lambda s: (s.start_time_ms, s.screening_id),
    )
    return MovieView(
        movie_id=movie_id,
        title=str(doc.get("title", "")),
        genres=_list(doc.get("genres")),
        duration_minutes=int(doc.get("duration_minutes", 0)),
        poster_url=str(doc.get("poster_url", "")),
        review_count=review_count,
        average_rating=round(rating_sum / review_count, 2) if review_count > 0 else 0.0,
        screenings=tuple(upcoming),
    )


def board(
    movies: Mapping[str, Document],
    screenings: Mapping[str, Document],
    taken: Mapping[str, int],
    reviews: Mapping[str, int],
    now_ms: int,
    genre: str = "",
) -> list[MovieView]:
    """Every listed movie with screenings to come, by title; only those of `genre` if given."""
    by_movie: dict[str, dict[str, Document]] = {}
    for sid, sdoc in screenings.items():
        if is_upcoming(sdoc, now_ms):
            by_movie.setdefault(str(sdoc.get("movie_id", "")), {})[sid] = sdoc
    wanted = genre.strip().casefold()
    views = []
    for movie_id, doc in movies.items():
        own = by_movie.get(movie_id)
        if not own or not is_listed(doc):
            continue
        if wanted and wanted not in (g.casefold() for g in _list(doc.get("genres"))):
            continue
        views.append(
            movie_view(
                movie_id,
                doc,
                own,
                taken,
                reviews.get(f"{movie_id}:n", 0),
                reviews.get(f"{movie_id}:sum", 0),
                now_ms,
            )
        )
    views.sort(key=lambda m: (m.title.casefold(), m.movie_id))
    return views


def reservation_view(reservation_id: str, doc: Document) -> ReservationView:
    return ReservationView(
        reservation_id=reservation_id,
        screening_id=str(doc.get("screening_id", "")),
        movie_id=str(doc.get("movie_id", "")),
        movie_title=str(doc.get("movie_title", "")),
        hall=str(doc.get("hall", "")),
        start_time_ms=int(doc.get("start_time_ms", 0)),
        seats=_list(doc.get("seats")),
        amount_minor=int(doc.get("amount_minor", 0)),
        currency=str(doc.get("currency", "")),
        state=str(doc.get("state", "")),
        payment_state=str(doc.get("payment_state", "")),
        update_time_ms=int(doc.get("update_time_ms", 0)),
    )
