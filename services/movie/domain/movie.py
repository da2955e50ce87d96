"""The Movie aggregate: what the catalog says about a film, changed only by managers.

A movie is registered (version 1), updated through a field mask (a new version only when a
value really changes) and deleted (a soft delete: the document stays, so its last events and
version survive and late review events still find it). Every change appends a domain event
to `pending`, which the store writes in the same atomic update as the change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.movie.domain.events import CatalogEvent, MovieDeleted, MovieRegistered, MovieUpdated
from services.movie.domain.values import raise_violations

EDITABLE_FIELDS = ("title", "description", "genres", "duration_minutes", "poster_url")
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_GENRES = 10
MAX_GENRE = 40
MAX_DURATION_MINUTES = 600
MAX_POSTER_URL = 2000
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")


@dataclass(frozen=True)
class MovieDetails:
    """The editable fields of a movie."""

    title: str
    description: str = ""
    genres: tuple[str, ...] = ()
    duration_minutes: int = 0
    poster_url: str = ""

    def violations(self, prefix: str = "movie.") -> list[FieldViolation]:
        found: list[FieldViolation] = []
        if not self.title.strip():
            found.append(FieldViolation(prefix + "title", "must not be empty"))
        elif len(self.title) > MAX_TITLE:
            found.append(FieldViolation(prefix + "title", f"must be at most {MAX_TITLE} characters"))
        if len(self.description) > MAX_DESCRIPTION:
            found.append(FieldViolation(prefix + "description", f"must be at most {MAX_DESCRIPTION} characters"))
        if len(self.genres) > MAX_GENRES:
            found.append(FieldViolation(prefix + "genres", f"must have at most {MAX_GENRES} items"))
        if len(set(self.genres)) != len(self.genres):
            found.append(FieldViolation(prefix + "genres", "must not repeat a genre"))
        for i, genre in enumerate(self.genres):
            if not 1 <= len(genre) <= MAX_GENRE:
                found.append(FieldViolation(f"{prefix}genres[{i}]", f"must be 1 to {MAX_GENRE} characters"))
        if not 0 < self.duration_minutes <= MAX_DURATION_MINUTES:
            found.append(
                FieldViolation(prefix + "duration_minutes", f"must be between 1 and {MAX_DURATION_MINUTES} minutes")
            )
        if self.poster_url and (len(self.poster_url) > MAX_POSTER_URL or not _URL.match(self.poster_url)):
            found.append(FieldViolation(prefix + "poster_url", "must be an absolute URL"))
        return found

    def validated(self) -> MovieDetails:
        raise_violations("movie", self.violations())
        return self

    def patched(self, values: Mapping[str, object], mask: Iterable[str]) -> MovieDetails:
        """These details with the fields named in `mask` taken from `values` (a field-mask update).

        Unknown paths are INVALID_ARGUMENT (`update_mask`); the result is not validated here.
        """
        paths = list(mask)
        if not paths:
            raise InvalidArgument.for_field("update_mask", "must name at least one field")
        unknown = [p for p in paths if p not in EDITABLE_FIELDS]
        if unknown:
            raise InvalidArgument.for_field(
                "update_mask", f"unknown or read-only field(s) {', '.join(unknown)}; editable: {EDITABLE_FIELDS}"
            )
        changes: dict[str, object] = {p: values[p] for p in paths}
        if "genres" in changes:
            changes["genres"] = tuple(changes["genres"])  # type: ignore[arg-type]  # an iterable of str
        return replace(self, **changes)  # type: ignore[arg-type]  # keys are field names checked above

    def differences(self, other: MovieDetails) -> tuple[str, ...]:
        return tuple(f for f in EDITABLE_FIELDS if getattr(self, f) != getattr(other, f))


@dataclass
class Movie:
    id: str
    details: MovieDetails
    created_at: datetime
    updated_at: datetime
    version: int = 0
    deleted: bool = False
    review_count: int = 0
    rating_sum: int = 0
    pending: list[CatalogEvent] = field(default_factory=list)

    @classmethod
    def register(cls, movie_id: str, details: MovieDetails, now: datetime) -> Movie:
        details.validated()
        movie = cls(id=movie_id, details=details, created_at=now, updated_at=now, version=1)
        movie.pending.append(
            MovieRegistered(
                aggregate_id=movie_id,
                version=1,
                title=details.title,
                description=details.description,
                genres=details.genres,
                duration_minutes=details.duration_minutes,
                poster_url=details.poster_url,
            )
        )
        return movie

    @property
    def title(self) -> str:
        return self.details.title

    @property
    def average_rating(self) -> float:
        return self.rating_sum / self.review_count if self.review_count > 0 else 0.0

    def _require_live(self) -> None:
        if self.deleted:
            raise FailedPrecondition(f"movie {self.id} is deleted", "MOVIE_DELETED", {"movie_id": self.id})

    def update(self, values: Mapping[str, object], mask: Iterable[str], now: datetime) -> bool:
        """Apply a field-mask update; returns whether anything changed (no event when nothing did)."""
        self._require_live()
        patched = self.details.patched(values, mask).validated()
        changed = self.details.differences(patched)
        if not changed:
            return False
        self.details = patched
        self.updated_at = now
        self.version += 1
        self.pending.append(
            MovieUpdated(
                aggregate_id=self.id,
                version=self.version,
                title=patched.title,
                description=patched.description,
                genres=patched.genres,
                duration_minutes=patched.duration_minutes,
                poster_url=patched.poster_url,
                changed=changed,
            )
        )
        return True

    def delete(self, now: datetime, by: Actor) -> bool:
        """Remove from the catalog (`by` whom); a second delete changes nothing (returns False)."""
        if self.deleted:
            return False
        self.deleted = True
        self.updated_at = now
        self.version += 1
        self.pending.append(MovieDeleted(aggregate_id=self.id, version=self.version, title=self.title, deleted_by=by))
        return True
