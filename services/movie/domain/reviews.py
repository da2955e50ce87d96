"""How review events change a movie's review count and rating, keyed by review id.

The movie keeps, per review id it has heard of, one entry: COUNTED (with the rating it added)
or DELETED (uncounted, or a tombstone for a delete that came before its post). So:
- a post of an unknown review counts it; a post of a known one (counted, or tombstoned by an
  earlier delete) changes nothing;
- a delete of a counted review uncounts it once; of a deleted one changes nothing; of an
  unknown one leaves a tombstone, so that the late post is ignored.
The store applies exactly these transitions as single-document conditional updates
(services.movie.adapters.mongo); `ReviewLedger` is the same rule in memory, for the tests
and as its specification.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

# Review ids become keys of a document's map: refuse anything that is not a plain token.
_REVIEW_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ReviewEntry(enum.StrEnum):
    COUNTED = "counted"
    DELETED = "deleted"


class Outcome(enum.StrEnum):
    COUNTED = "counted"
    UNCOUNTED = "uncounted"
    TOMBSTONED = "tombstoned"  # a delete arrived before its post
    UNCHANGED = "unchanged"  # a redelivery, or a post after its delete


def valid_review_id(review_id: str) -> bool:
    return bool(_REVIEW_ID.match(review_id))


@dataclass
class ReviewLedger:
    entries: dict[str, tuple[ReviewEntry, int]] = field(default_factory=dict)
    count: int = 0
    rating_sum: int = 0

    def posted(self, review_id: str, rating: int) -> Outcome:
        if review_id in self.entries:
            return Outcome.UNCHANGED
        self.entries[review_id] = (ReviewEntry.COUNTED, rating)
        self.count += 1
        self.rating_sum += rating
        return Outcome.COUNTED

    def deleted(self, review_id: str) -> Outcome:
        entry = self.entries.get(review_id)
        if entry is None:
            self.entries[review_id] = (ReviewEntry.DELETED, 0)
            return Outcome.TOMBSTONED
        state, rating = entry
        if state is ReviewEntry.DELETED:
            return Outcome.UNCHANGED
        self.entries[review_id] = (ReviewEntry.DELETED, rating)
        self.count -= 1
        self.rating_sum -= rating
        return Outcome.UNCOUNTED

    @property
    def average(self) -> float:
        return self.rating_sum / self.count if self.count else 0.0
