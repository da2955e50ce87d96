"""The review use cases on fakes: posting (one per customer per movie, idempotent retries),
reading, paging, deleting (author, manager, others), the outbox woken after every write."""

from __future__ import annotations

import copy
import uuid

import pytest

from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.review.domain.events import ReviewDeleted, ReviewPosted
from services.review.domain.review import ReviewState
from services.review.service_layer import catalog, reviews
from services.review.service_layer.reviews import (
    Author,
    DeleteReview,
    PostReview,
    ReviewDependencies,
    review_id_for_request,
)

from .fakes import FakeOutbox, FakeReviewRepository

MOVIE = "0b6a1c8e-3f5d-4a47-9f8e-1c2d3e4f5a6b"
OTHER_MOVIE = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
ALICE = Author("alice", name="Alice")
BOB = Author("bob")
MANAGER = Author("boss", is_manager=True)


async def test_a_review_is_stored_with_its_posted_event_and_the_relay_woken(
    deps: ReviewDependencies, store: FakeReviewRepository, outbox: FakeOutbox
) -> None:
    review = await reviews.post_review(PostReview(ALICE, MOVIE, 5, "Great"), deps)
    assert (review.customer_id, review.author_name, review.rating, review.text) == ("alice", "Alice", 5, "Great")
    assert [type(e) for e in store.pending[review.id]] == [ReviewPosted]
    assert outbox.wakes == 1
    assert await reviews.get_review(review.id, deps) == review


async def test_a_second_review_of_the_same_movie_is_already_exists_naming_the_first(
    deps: ReviewDependencies, outbox: FakeOutbox
) -> None:
    first = await reviews.post_review(PostReview(ALICE, MOVIE, 4, ""), deps)
    with pytest.raises(AlreadyExists) as caught:
        await reviews.post_review(PostReview(ALICE, MOVIE, 1, "changed my mind"), deps)
    assert caught.value.resource_name == first.id
    assert outbox.wakes == 1
    await reviews.post_review(PostReview(ALICE, OTHER_MOVIE, 4, ""), deps)
    await reviews.post_review(PostReview(BOB, MOVIE, 4, ""), deps)


async def test_a_retry_with_the_same_request_id_returns_the_first_review(
    deps: ReviewDependencies, store: FakeReviewRepository
) -> None:
    request_id = str(uuid.uuid4())
    first = await reviews.post_review(PostReview(ALICE, MOVIE, 4, "x", request_id), deps)
    assert first.id == review_id_for_request("alice", request_id)
    again = await reviews.post_review(PostReview(ALICE, MOVIE, 4, "x", request_id), deps)
    assert again == first
    assert len(store.documents) == 1 and len(store.pending[first.id]) == 1
    # The same key from another customer is another request.
    assert review_id_for_request("bob", request_id) != first.id


async def test_a_request_id_reused_for_another_movie_is_refused(deps: ReviewDependencies) -> None:
    request_id = str(uuid.uuid4())
    await reviews.post_review(PostReview(ALICE, MOVIE, 4, "", request_id), deps)
    with pytest.raises(FailedPrecondition) as caught:
        await reviews.post_review(PostReview(ALICE, OTHER_MOVIE, 4, "", request_id), deps)
    assert caught.value.reason == "REQUEST_ID_REUSED"


async def test_invalid_input_writes_nothing(deps: ReviewDependencies, store: FakeReviewRepository) -> None:
    with pytest.raises(InvalidArgument):
        await reviews.post_review(PostReview(ALICE, MOVIE, 6, ""), deps)
    assert store.documents == {}


async def test_the_author_deletes_their_review(
    deps: ReviewDependencies, store: FakeReviewRepository, outbox: FakeOutbox
) -> None:
    review = await reviews.post_review(PostReview(ALICE, MOVIE, 3, ""), deps)
    deleted = await reviews.delete_review(DeleteReview(ALICE, review.id), deps)
    assert deleted.state is ReviewState.DELETED
    events = store.pending[review.id]
    assert [(type(e), e.version) for e in events] == [(ReviewPosted, 1), (ReviewDeleted, 2)]
    assert isinstance(events[1], ReviewDeleted) and events[1].rating == 3
    assert outbox.wakes == 2
    with pytest.raises(NotFound):
        await reviews.get_review(review.id, deps)
    with pytest.raises(NotFound):
        await reviews.delete_review(DeleteReview(ALICE, review.id), deps)
    # The tombstone stays (its event is pending), but the author may post again.
    again = await reviews.post_review(PostReview(ALICE, MOVIE, 5, ""), deps)
    assert again.id != review.id


async def test_a_manager_deletes_any_review_and_another_customer_none(
    deps: ReviewDependencies, store: FakeReviewRepository
) -> None:
    review = await reviews.post_review(PostReview(ALICE, MOVIE, 3, ""), deps)
    with pytest.raises(PermissionDenied):
        await reviews.delete_review(DeleteReview(BOB, review.id), deps)
    assert len(store.pending[review.id]) == 1
    await reviews.delete_review(DeleteReview(MANAGER, review.id), deps)
    last = store.pending[review.id][-1]
    assert isinstance(last, ReviewDeleted) and last.deleted_by == "boss"


async def test_an_unknown_review_is_not_found(deps: ReviewDependencies) -> None:
    with pytest.raises(NotFound):
        await reviews.get_review(str(uuid.uuid4()), deps)
    with pytest.raises(NotFound):
        await reviews.delete_review(DeleteReview(MANAGER, str(uuid.uuid4())), deps)


async def test_a_delete_that_loses_a_race_is_not_found_and_writes_nothing(
    deps: ReviewDependencies, store: FakeReviewRepository
) -> None:
    review = await reviews.post_review(PostReview(ALICE, MOVIE, 3, ""), deps)
    # A manager's delete lands between the author's read and write.
    theirs = copy.deepcopy(store.documents[review.id])
    theirs.delete(by="boss", is_manager=True, at=review.created_at)
    store.before_update.append(theirs)
    with pytest.raises(NotFound):
        await reviews.delete_review(DeleteReview(ALICE, review.id), deps)
    assert len(store.pending[review.id]) == 1  # the loser wrote no second ReviewDeleted


async def test_listing_is_newest_first_with_default_and_capped_page_sizes(deps: ReviewDependencies) -> None:
    posted = [await reviews.post_review(PostReview(Author(f"c{i}"), MOVIE, 4, ""), deps) for i in range(7)]
    await reviews.post_review(PostReview(ALICE, OTHER_MOVIE, 4, ""), deps)
    first = await reviews.list_reviews(MOVIE, 0, "", deps)  # 0: the default (3 here)
    assert [r.id for r in first.reviews] == [r.id for r in reversed(posted)][:3]
    capped = await reviews.list_reviews(MOVIE, 100, "", deps)  # capped at the maximum (5 here)
    assert len(capped.reviews) == 5 and capped.next_page_token
    walked, token = [], ""
    while True:
        page = await reviews.list_reviews(MOVIE, 2, token, deps)
        walked += [r.id for r in page.reviews]
        token = page.next_page_token
        if not token:
            break
    assert walked == [r.id for r in reversed(posted)]


async def test_a_review_of_a_movie_the_catalog_does_not_know_is_not_found_and_writes_nothing(
    deps: ReviewDependencies, store: FakeReviewRepository, outbox: FakeOutbox
) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound) as caught:
        await reviews.post_review(PostReview(ALICE, unknown, 5, "Who?"), deps)
    assert (caught.value.resource_type, caught.value.resource_name) == ("movie", unknown)
    assert store.documents == {} and outbox.wakes == 0


async def test_a_deleted_movie_takes_no_more_reviews_but_keeps_its_own(deps: ReviewDependencies) -> None:
    kept = await reviews.post_review(PostReview(ALICE, MOVIE, 4, "Fine"), deps)
    await catalog.on_movie_deleted(MOVIE, deps.catalog)
    await catalog.on_movie_registered(MOVIE, deps.catalog)  # a late registration does not reopen it
    with pytest.raises(NotFound):
        await reviews.post_review(PostReview(BOB, MOVIE, 2, "Late"), deps)
    assert await reviews.get_review(kept.id, deps) == kept
