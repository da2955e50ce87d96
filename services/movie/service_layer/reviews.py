"""Use cases fed by the review context's events: the review count and rating of a movie.

Each event is applied once by review id (see services.movie.domain.reviews), so redelivery and
a delete that overtakes its post change nothing twice. A review event for a movie this service
does not know is refused (`MovieNotKnown`) as one that can never be applied: counted and set
aside at once (services.kit.events.outcomes.Unappliable), neither retried nor dead-lettered.
Movie ids are minted here and a movie document is never removed (deletion is a flag), so an
unknown id is a review of a movie that never existed, not one we have yet to hear of; recording
it on a stub would keep garbage forever. The review service accepts reviews only of movies its
replica of the catalog knows, so this is not something a customer can cause; the dead-letter
stream stays for failures an operator must look at.
"""

from __future__ import annotations

import logging

from services.kit.events.outcomes import Unappliable
from services.movie.domain.reviews import Outcome, valid_review_id
from services.movie.service_layer.dependencies import CatalogDependencies

log = logging.getLogger(__name__)


class MovieNotKnown(Unappliable):
    """A review event names a movie this catalog never had: set aside, counted."""


class BadReviewEvent(Unappliable):
    """A review event that can never apply (e.g. an id unfit as a key): set aside, counted."""


def _check(review_id: str, rating: int | None) -> None:
    if not valid_review_id(review_id):
        raise BadReviewEvent(f"review id {review_id!r} is not a plain token")
    if rating is not None and not 1 <= rating <= 5:
        raise BadReviewEvent(f"review {review_id} has rating {rating}, not 1..5")


async def on_review_posted(movie_id: str, review_id: str, rating: int, deps: CatalogDependencies) -> Outcome:
    _check(review_id, rating)
    outcome = await deps.movies.record_review_posted(movie_id, review_id, rating)
    if outcome is None:
        raise MovieNotKnown(f"review {review_id} is about movie {movie_id}, which this catalog does not know")
    log.info("review %s posted for movie %s: %s", review_id, movie_id, outcome.value)
    return outcome


async def on_review_deleted(movie_id: str, review_id: str, deps: CatalogDependencies) -> Outcome:
    _check(review_id, None)
    outcome = await deps.movies.record_review_deleted(movie_id, review_id)
    if outcome is None:
        raise MovieNotKnown(f"review {review_id} is about movie {movie_id}, which this catalog does not know")
    log.info("review %s deleted for movie %s: %s", review_id, movie_id, outcome.value)
    return outcome
