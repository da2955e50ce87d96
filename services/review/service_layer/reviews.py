"""Use cases of the review service: post, get, list and delete reviews.

Who may do what is decided here and in the domain, from an `Author` the gRPC adapter builds
from the verified token: posting needs role `customer`; deleting needs `customer` (own review)
or `manager` (any review); reading is open to anyone (anonymous included).

A review is accepted only for a movie that exists and is not deleted, as review's own replica
of the catalog knows it (services.review.service_layer.catalog): NOT_FOUND otherwise. The service
never calls the movie service, so reviews keep working while it is down, and no customer can
make review announce an event about a movie the movie service would have to park.

Idempotency (AIP-155): with a `request_id`, the review id is derived from (customer, request_id)
(a UUIDv5), so a retried request collides with its first attempt on the document id and gets
the first review back, whoever wins a race between the two.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from services.review.domain.review import Review
from services.review.service_layer.ports import (
    Clock,
    DuplicateReview,
    MovieCatalog,
    OutboxSignal,
    ReviewPage,
    ReviewRepository,
)

# Namespace of the review ids derived from idempotency keys (a fixed, arbitrary UUID).
REQUEST_NAMESPACE = uuid.UUID("6a3c2f0e-9a43-4c1e-b7f6-3f6d1f0c8e21")
POST_ATTEMPTS = 2


def new_uuid() -> str:
    return str(uuid.uuid4())


def review_id_for_request(customer_id: str, request_id: str) -> str:
    """The id a review posted by `customer_id` with idempotency key `request_id` gets."""
    return str(uuid.uuid5(REQUEST_NAMESPACE, f"{customer_id}\n{request_id}"))


@dataclass(frozen=True)
class Author:
    """The caller as the use cases see it (built from the token by the gRPC adapter)."""

    subject: str
    is_manager: bool = False
    name: str = ""


@dataclass(frozen=True)
class PostReview:
    author: Author
    movie_id: str
    rating: int
    text: str
    request_id: str = ""


@dataclass(frozen=True)
class DeleteReview:
    author: Author
    review_id: str


@dataclass(frozen=True)
class ReviewDependencies:
    reviews: ReviewRepository
    clock: Clock
    outbox: OutboxSignal
    catalog: MovieCatalog
    new_id: Callable[[], str] = field(default=new_uuid)
    default_page_size: int = 50
    max_page_size: int = 100
    retry_after_s: float = 1.0


async def post_review(cmd: PostReview, deps: ReviewDependencies) -> Review:
    """Post a review; NotFound if the movie does not exist (or was deleted), AlreadyExists if the
    author has a standing review of this movie."""
    customer_id = cmd.author.subject
    review_id = review_id_for_request(customer_id, cmd.request_id) if cmd.request_id else deps.new_id()
    review, posted = Review.post(
        review_id=review_id,
        movie_id=cmd.movie_id,
        customer_id=customer_id,
        author_name=cmd.author.name,
        rating=cmd.rating,
        text=cmd.text,
        at=deps.clock.now(),
    )
    # after the domain's checks (a malformed request is INVALID_ARGUMENT, not NOT_FOUND)
    if not await deps.catalog.accepts_reviews(cmd.movie_id):
        raise NotFound("movie", cmd.movie_id)
    for _attempt in range(POST_ATTEMPTS):
        try:
            await deps.reviews.add(review, [posted])
        except DuplicateReview:
            if cmd.request_id:
                first = await deps.reviews.get(review_id)
                if first is not None:
                    return _same_request(first, cmd)
            existing = await deps.reviews.find_by_author(cmd.movie_id, customer_id)
            if existing is None:
                continue  # the author's previous review was deleted meanwhile: the key is free now
            raise AlreadyExists(
                "review",
                existing.id,
                f"customer {customer_id!r} has already reviewed movie {cmd.movie_id!r} (review {existing.id});"
                " delete it to post another",
            ) from None
        deps.outbox.wake()
        return review
    raise Unavailable("the review is being changed; retry", retry_after_s=deps.retry_after_s)


def _same_request(first: Review, cmd: PostReview) -> Review:
    if first.movie_id != cmd.movie_id:
        raise FailedPrecondition(
            f"request_id {cmd.request_id!r} was already used for a review of another movie",
            reason="REQUEST_ID_REUSED",
            metadata={"request_id": cmd.request_id, "review": first.id},
        )
    return first


async def get_review(review_id: str, deps: ReviewDependencies) -> Review:
    review = await deps.reviews.get(review_id)
    if review is None or review.is_deleted:
        raise NotFound("review", review_id)
    return review


async def list_reviews(movie_id: str, page_size: int, page_token: str, deps: ReviewDependencies) -> ReviewPage:
    """A movie's standing reviews, newest first; page size 0 means the default."""
    size = min(page_size or deps.default_page_size, deps.max_page_size)
    return await deps.reviews.list_for_movie(movie_id, size, page_token)


async def delete_review(cmd: DeleteReview, deps: ReviewDependencies) -> Review:
    """Delete a review (author or manager): its tombstone with ReviewDeleted pending, in one write.
    Of concurrent deletes of one review exactly one succeeds; the others answer NOT_FOUND."""
    review = await deps.reviews.get(cmd.review_id)
    if review is None:
        raise NotFound("review", cmd.review_id)
    deleted = review.delete(by=cmd.author.subject, is_manager=cmd.author.is_manager, at=deps.clock.now())
    if not await deps.reviews.record_deletion(review, [deleted]):
        raise NotFound("review", cmd.review_id)  # a concurrent delete got there first
    deps.outbox.wake()
    return review
