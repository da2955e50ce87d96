"""How one event changes the board: a `Plan` the store applies atomically, or not at all.

The board is merged from events of many aggregates that arrive in any order (replicas pull in
parallel, redeliveries come late), so a plan is written to be order-safe and idempotent:

- Documents (a movie, a screening, a customer's reservation) are merged field by field, each
  field keeping the value of the highest version that wrote it (last writer wins by version,
  not by arrival). A late event therefore never rolls a field back, and a late *partial* event
  (ScreeningScheduled arriving after ScreeningRescheduled) still fills the fields it alone has.
  Every field is written by one kind of aggregate only, so the versions it compares are
  comparable. Hints (a screening naming its movie's title) write with version 0: any event of
  the movie itself overrides them.
- Counters shared by many aggregates (seats taken per screening, review count and rating sum per
  movie) are the sum of each aggregate's *contribution*. An aggregate's newer version replaces
  its contribution (the store adds new minus old); an older or equal version changes nothing.
  So a review counts once whatever the deliveries, and a cancellation seen before its
  confirmation frees nothing it never took.
- The aggregate's applied version is kept; the outcome says whether the event was new.
- A plan names the movies whose *board entry* it may change (`touches`): the store then
  re-materialises each one (its entry, ready to serve, and its places in the ordered indexes by
  title, genre and day) in the same atomic step, so a read never assembles the board itself.
  A reservation names its screening; the store finds the movie from the screening's document
  (a failed reservation names no movie).
- Derived keys are computed here, once, where Unicode and time zones are at hand: a movie's
  `sort_key` (its casefolded title: the board's order), its `genre_keys` (casefolded genres: the
  genre filter) and a screening's `day` (its date in the cinema's time zone: the day filter). A
  change of the cinema's time zone therefore needs a rebuild of the board.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from services.viewpage.domain.events import (
    PAYMENT_APPROVED,
    PAYMENT_REFUNDED,
    RESERVATION_CONFIRMED,
    BoardEvent,
    EventMeta,
    MovieDetailsChanged,
    MovieRemoved,
    PaymentChanged,
    ReservationChanged,
    ReviewDeleted,
    ReviewPosted,
    ScreeningCancelled,
    ScreeningRescheduled,
    ScreeningScheduled,
)

# Collections of the read model (one Redis hash each, per generation).
MOVIES = "movies"
SCREENINGS = "screenings"
RESERVATIONS = "reservations"
TAKEN = "taken"  # screening id -> seats held by confirmed reservations
REVIEWS = "reviews"  # "<movie id>:n" -> review count, "<movie id>:sum" -> sum of ratings
HINT_VERSION = 0


SORT_KEY_CHARS = 100


def sort_key(title: str) -> str:
    """The board's order: casefolded title (ties broken by movie id in the store).

    Its first 100 characters only: a page token carries the key of the last movie of its page,
    and must fit in the 1,024 characters a request's `page_token` may have, whatever the script.
    """
    return title.casefold()[:SORT_KEY_CHARS]


def genre_key(genre: str) -> str:
    """The genre filter's key: case-insensitive, surrounding blanks ignored."""
    return genre.strip().casefold()


def day_of(start_time_ms: int, zone: tzinfo) -> str:
    """The date of a screening in the cinema's time zone, "YYYY-MM-DD" (the day filter's key)."""
    return datetime.fromtimestamp(start_time_ms / 1000, UTC).astimezone(zone).date().isoformat()


def customer_index(customer_id: str) -> str:
    """The sorted set of a customer's reservation ids (scored by first-seen time)."""
    return f"cust:{customer_id}"


def movie_screenings_index(movie_id: str) -> str:
    return f"movie_screenings:{movie_id}"


def screening_reservations_index(screening_id: str) -> str:
    """The set of a screening's reservation ids (the manager's sales read their documents)."""
    return f"screening_reservations:{screening_id}"


def review_count_field(movie_id: str) -> str:
    return f"{movie_id}:n"


def review_sum_field(movie_id: str) -> str:
    return f"{movie_id}:sum"


@dataclass(frozen=True)
class Merge:
    """Set `fields` of document `id` in `collection`, each only where `version` is newer."""

    collection: str
    id: str
    version: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class Share:
    """An amount an aggregate adds to a counter: `field` of the hash `counter`."""

    counter: str
    field: str
    amount: int


@dataclass(frozen=True)
class SetMember:
    index: str
    member: str


@dataclass(frozen=True)
class RankedMember:
    """A member of a sorted set; the lowest score seen wins (first-seen order)."""

    index: str
    member: str
    score: int


@dataclass(frozen=True)
class Plan:
    aggregate: str  # "<kind>:<id>", the key of the applied version and of the contribution
    version: int
    time_ms: int
    merges: tuple[Merge, ...] = ()
    contribution: tuple[Share, ...] | None = None  # None: this event says nothing about shares
    members: tuple[SetMember | RankedMember, ...] = field(default_factory=tuple)
    # Board entries to re-materialise: ("movie", id) or ("screening", id) for the movie showing it.
    touches: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The shape the store's Lua script reads."""
        document: dict[str, Any] = {
            "aggregate": self.aggregate,
            "version": self.version,
            "time": self.time_ms,
            "merges": [
                {"collection": m.collection, "id": m.id, "version": m.version, "fields": m.fields} for m in self.merges
            ],
            "members": [
                ["zset", m.index, m.member, m.score] if isinstance(m, RankedMember) else ["set", m.index, m.member]
                for m in self.members
            ],
            "touches": [list(t) for t in self.touches],
        }
        if self.contribution is not None:
            document["contribution"] = [[s.counter, s.field, s.amount] for s in self.contribution]
        return document


@dataclass(frozen=True)
class BoardChange:
    """What an applied event changed on the public board, for live pages (ids; "" when unknown).

    A page showing the movie refetches its board entry; a screening id without a movie id
    (a cancellation names no movie) is enough for a page that knows which movie shows it.
    """

    movie_id: str
    screening_id: str = ""


def change_of(event: BoardEvent) -> BoardChange | None:
    """The part of the public board `event` changes; None for changes only a customer sees."""
    match event:
        case MovieDetailsChanged() | MovieRemoved() | ReviewPosted() | ReviewDeleted():
            return BoardChange(event.movie_id)
        case ScreeningScheduled() | ScreeningRescheduled() | ScreeningCancelled():
            return BoardChange(event.movie_id, event.screening_id)
        case ReservationChanged():
            return BoardChange(event.movie_id or "", event.screening_id)
    return None  # PaymentChanged: the payment state shows on the customer's own reservations only


def plan_for(event: BoardEvent, meta: EventMeta, zone: tzinfo = UTC) -> Plan:
    """The change `event` makes to the board (pure: the store applies it); `zone` is the cinema's."""
    version = meta.aggregate_version
    match event:
        case MovieDetailsChanged():
            return Plan(
                f"movie:{event.movie_id}",
                version,
                meta.time_ms,
                merges=(
                    Merge(
                        MOVIES,
                        event.movie_id,
                        version,
                        {
                            "title": event.title,
                            "genres": list(event.genres),
                            "duration_minutes": event.duration_minutes,
                            "poster_url": event.poster_url,
                            "deleted": False,
                            "sort_key": sort_key(event.title),
                            "genre_keys": [genre_key(g) for g in event.genres],
                        },
                    ),
                ),
                touches=(("movie", event.movie_id),),
            )
        case MovieRemoved():
            return Plan(
                f"movie:{event.movie_id}",
                version,
                meta.time_ms,
                merges=(Merge(MOVIES, event.movie_id, version, {"deleted": True}),),
                touches=(("movie", event.movie_id),),
            )
        case ScreeningScheduled():
            return Plan(
                f"screening:{event.screening_id}",
                version,
                meta.time_ms,
                merges=(
                    Merge(
                        SCREENINGS,
                        event.screening_id,
                        version,
                        {
                            "movie_id": event.movie_id,
                            "hall": event.hall,
                            "start_time_ms": event.start_time_ms,
                            "total_seats": event.total_seats,
                            "price_minor": event.price_minor,
                            "currency": event.currency,
                            "cancelled": False,
                            "day": day_of(event.start_time_ms, zone),
                            "blocked_seats": event.blocked_seats,
                        },
                    ),
                    _movie_hint(event.movie_id, event.movie_title, event.duration_minutes),
                ),
                members=(SetMember(movie_screenings_index(event.movie_id), event.screening_id),),
                touches=(("movie", event.movie_id),),
            )
        case ScreeningRescheduled():
            return Plan(
                f"screening:{event.screening_id}",
                version,
                meta.time_ms,
                merges=(
                    Merge(
                        SCREENINGS,
                        event.screening_id,
                        version,
                        {
                            "movie_id": event.movie_id,
                            "hall": event.hall,
                            "start_time_ms": event.start_time_ms,
                            "day": day_of(event.start_time_ms, zone),
                        },
                    ),
                ),
                members=(SetMember(movie_screenings_index(event.movie_id), event.screening_id),),
                touches=(("movie", event.movie_id),),
            )
        case ScreeningCancelled():
            return Plan(
                f"screening:{event.screening_id}",
                version,
                meta.time_ms,
                merges=(
                    Merge(SCREENINGS, event.screening_id, version, {"movie_id": event.movie_id, "cancelled": True}),
                ),
                members=(SetMember(movie_screenings_index(event.movie_id), event.screening_id),),
                touches=(("movie", event.movie_id),),
            )
        case ReservationChanged():
            return _reservation_plan(event, meta)
        case PaymentChanged():
            # The payment state is a field of the reservation's entry that only payment events
            # write, ordered by the payment's own version; so are the amounts the sales add up.
            return Plan(
                f"payment:{event.payment_id}",
                version,
                meta.time_ms,
                merges=(
                    Merge(RESERVATIONS, event.reservation_id, version, _payment_fields(event, meta.time_ms)),
                    _touched(event.reservation_id, meta.time_ms),
                ),
            )
        case ReviewPosted():
            return Plan(
                f"review:{event.review_id}",
                version,
                meta.time_ms,
                contribution=(
                    Share(REVIEWS, review_count_field(event.movie_id), 1),
                    Share(REVIEWS, review_sum_field(event.movie_id), event.rating),
                ),
                touches=(("movie", event.movie_id),),
            )
        case ReviewDeleted():
            return Plan(
                f"review:{event.review_id}",
                version,
                meta.time_ms,
                contribution=(),
                touches=(("movie", event.movie_id),),
            )
    raise TypeError(f"not a board event: {event!r}")


def _payment_fields(event: PaymentChanged, time_ms: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"payment_state": event.state}
    if event.amount_minor is not None:
        # Each amount is written by one kind of payment event only, with the time it happened
        # (the manager's sales over time): a refund never overwrites what was taken.
        if event.state == PAYMENT_APPROVED:
            fields.update(paid_minor=event.amount_minor, paid_currency=event.currency or "", paid_at_ms=time_ms)
        elif event.state == PAYMENT_REFUNDED:
            fields.update(
                refunded_minor=event.amount_minor, refunded_currency=event.currency or "", refunded_at_ms=time_ms
            )
    return fields


def _movie_hint(movie_id: str, title: str, duration_minutes: int) -> Merge:
    return Merge(
        MOVIES,
        movie_id,
        HINT_VERSION,
        {"title": title, "duration_minutes": duration_minutes, "sort_key": sort_key(title)},
    )


def _touched(reservation_id: str, time_ms: int) -> Merge:
    # `update_time` is the newest event time of the entry, whichever aggregate it came from:
    # the time itself is the version.
    return Merge(RESERVATIONS, reservation_id, time_ms, {"update_time_ms": time_ms})


def _reservation_plan(event: ReservationChanged, meta: EventMeta) -> Plan:
    fields: dict[str, Any] = {
        "customer_id": event.customer_id,
        "state": event.state,
        "screening_id": event.screening_id,
        "seats": list(event.seats),
    }
    optional: dict[str, Any] = {
        "movie_id": event.movie_id,
        "movie_title": event.movie_title,
        "hall": event.hall,
        "start_time_ms": event.start_time_ms,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
    }
    fields.update({name: value for name, value in optional.items() if value not in (None, "")})
    if event.state == RESERVATION_CONFIRMED:
        fields["confirmed_at_ms"] = meta.time_ms  # when the seats were sold: the sales over time
    shares = (Share(TAKEN, event.screening_id, len(event.seats)),) if event.holds_seats else ()
    return Plan(
        f"reservation:{event.reservation_id}",
        meta.aggregate_version,
        meta.time_ms,
        merges=(
            Merge(RESERVATIONS, event.reservation_id, meta.aggregate_version, fields),
            _touched(event.reservation_id, meta.time_ms),
        ),
        contribution=shares,
        members=(
            RankedMember(customer_index(event.customer_id), event.reservation_id, meta.time_ms),
            SetMember(screening_reservations_index(event.screening_id), event.reservation_id),
        ),
        # Seats taken change the free seats its movie's entry shows.
        touches=(("screening", event.screening_id),),
    )
