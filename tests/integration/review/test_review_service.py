"""The review service over real gRPC on FerretDB and NATS: post, get, list newest first with
keyset pages, one review per customer per movie (also under concurrent posts), delete own,
manager deletes any, another customer's delete refused, contract validation naming the field,
who needs a token, idempotent retries, and the movie service never consulted."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest

from cinema.review.v1 import review_pb2 as pb
from cinema.review.v1 import review_pb2_grpc
from services.kit.grpc_errors import error_details
from tests.integration.review.helpers import Tokens, create_request

pytestmark = pytest.mark.integration

if TYPE_CHECKING:
    Stub = review_pb2_grpc.ReviewServiceAsyncStub  # only in the stubs
else:
    Stub = Any


_OPEN: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _open_movies(open_movies: list[str]) -> None:
    _OPEN[:] = open_movies


def new_movie() -> str:
    """A movie the service takes reviews of (one its replica of the catalog knows)."""
    return _OPEN.pop()


async def post(stub: Stub, tokens: Tokens, customer: str, movie_id: str, rating: int = 4, text: str = "") -> pb.Review:
    reply = await stub.CreateReview(create_request(movie_id, rating, text), metadata=tokens.customer(customer))
    return reply.review


async def test_a_customer_posts_a_review_and_anyone_reads_it(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    reply = await stub.CreateReview(
        create_request(movie_id, 5, "A masterpiece."), metadata=tokens.customer("alice", name="Alice")
    )
    review = reply.review
    assert uuid.UUID(review.id)
    assert (review.movie_id, review.customer_id, review.author_name) == (movie_id, "alice", "Alice")
    assert (review.rating, review.text) == (5, "A masterpiece.")
    assert review.create_time.seconds > 0

    anonymous = await stub.GetReview(pb.GetReviewRequest(review_id=review.id))  # no token: public
    assert anonymous.review == review
    listed = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))
    assert list(listed.reviews) == [review]
    assert listed.next_page_token == ""


async def test_list_is_newest_first_in_keyset_pages(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    posted = []
    for i in range(7):
        posted.append(await post(stub, tokens, f"lister-{i}", movie_id, rating=i % 5 + 1))
    await post(stub, tokens, "elsewhere", new_movie())  # another movie's review stays out

    pages: list[list[pb.Review]] = []
    token = ""
    while True:
        reply = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=3, page_token=token))
        pages.append(list(reply.reviews))
        token = reply.next_page_token
        if not token:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [review for page in pages for review in page]
    assert [r.id for r in listed] == [r.id for r in reversed(posted)]  # newest first
    stamps = [(r.create_time.seconds, r.create_time.nanos, r.id) for r in listed]
    assert stamps == sorted(stamps, reverse=True)

    # A review posted while paging shows on the first page, not in the middle of the walk.
    first = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=3))
    newer = await post(stub, tokens, "latecomer", movie_id)
    second = await stub.ListReviews(
        pb.ListReviewsRequest(movie_id=movie_id, page_size=3, page_token=first.next_page_token)
    )
    assert [r.id for r in second.reviews] == [r.id for r in listed[3:6]]
    assert (await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=1))).reviews[0].id == newer.id


async def test_a_page_token_of_another_movie_or_garbage_is_invalid(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    for i in range(2):
        await post(stub, tokens, f"token-{i}", movie_id)
    reply = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id, page_size=1))
    assert reply.next_page_token
    for movie, token in ((new_movie(), reply.next_page_token), (movie_id, "not-a-token")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie, page_token=token))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (caught.value.details() or "")


async def test_a_second_review_of_the_same_movie_is_already_exists(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    first = await post(stub, tokens, "bob", movie_id, 3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await post(stub, tokens, "bob", movie_id, 5)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in (caught.value.details() or "")
    await post(stub, tokens, "bob", new_movie())  # another movie: fine
    await post(stub, tokens, "carol", movie_id)  # another customer: fine


async def test_ten_concurrent_posts_of_one_customer_exactly_one_wins(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    results = await asyncio.gather(
        *(post(stub, tokens, "racer", movie_id, rating=i % 5 + 1) for i in range(10)), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, pb.Review)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1, results
    assert len(lost) == 9 and all(e.code() == grpc.StatusCode.ALREADY_EXISTS for e in lost), results
    listed = await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))
    assert [r.id for r in listed.reviews] == [won[0].id]


async def test_a_retry_with_the_same_request_id_returns_the_first_review(stub: Stub, tokens: Tokens) -> None:
    movie_id, request_id = new_movie(), str(uuid.uuid4())
    metadata = tokens.customer("retrier")
    replies = await asyncio.gather(
        *(stub.CreateReview(create_request(movie_id, 4, "same", request_id), metadata=metadata) for _ in range(5))
    )
    assert len({reply.review.id for reply in replies}) == 1
    assert len((await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))).reviews) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the key reused for another movie
        await stub.CreateReview(create_request(new_movie(), 4, "", request_id), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_author_deletes_their_review_and_may_post_again(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    review = await post(stub, tokens, "dave", movie_id, 2)
    await stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.customer("dave"))
    for call in (
        stub.GetReview(pb.GetReviewRequest(review_id=review.id)),
        stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.customer("dave")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert list((await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))).reviews) == []
    again = await post(stub, tokens, "dave", movie_id, 4)
    assert again.id != review.id


async def test_a_manager_deletes_any_review(stub: Stub, tokens: Tokens) -> None:
    review = await post(stub, tokens, "erin", new_movie())
    await stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.manager())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetReview(pb.GetReviewRequest(review_id=review.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_another_customer_may_not_delete_a_review(stub: Stub, tokens: Tokens) -> None:
    review = await post(stub, tokens, "frank", new_movie())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.customer("mallory"))
    # PERMISSION_DENIED, not NOT_FOUND: the review is public (GetReview shows it to anyone).
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await stub.GetReview(pb.GetReviewRequest(review_id=review.id))).review == review


async def test_deleting_an_unknown_review_is_not_found(stub: Stub, tokens: Tokens) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.DeleteReview(pb.DeleteReviewRequest(review_id=str(uuid.uuid4())), metadata=tokens.manager())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("rating", "text", "field"),
    [(0, "", "review.rating"), (6, "", "review.rating"), (3, "x" * 2001, "review.text")],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stub: Stub, tokens: Tokens, rating: int, text: str, field: str
) -> None:
    movie_id = new_movie()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateReview(create_request(movie_id, rating, text), metadata=tokens.customer("grace"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request = next(d for d in error_details(caught.value) if d.DESCRIPTOR.name == "BadRequest")
    assert [v.field for v in bad_request.field_violations] == [field]  # type: ignore[attr-defined]
    assert list((await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))).reviews) == []


async def test_text_of_exactly_2000_characters_is_accepted(stub: Stub, tokens: Tokens) -> None:
    review = await post(stub, tokens, "heidi", new_movie(), 1, "é" * 2000)  # characters, not bytes
    assert len(review.text) == 2000


async def test_malformed_ids_are_invalid_argument(stub: Stub, tokens: Tokens) -> None:
    for call in (
        stub.CreateReview(create_request("not-a-uuid"), metadata=tokens.customer("ivan")),
        stub.GetReview(pb.GetReviewRequest(review_id="nope")),
        stub.ListReviews(pb.ListReviewsRequest(movie_id="nope")),
        stub.ListReviews(pb.ListReviewsRequest(movie_id=new_movie(), page_size=101)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_writes_need_a_token_and_the_right_role(stub: Stub, tokens: Tokens) -> None:
    review = await post(stub, tokens, "judy", new_movie())
    for call in (
        stub.CreateReview(create_request(new_movie())),
        stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A manager (without role customer) does not post reviews; a token without a role deletes nothing.
    for call in (
        stub.CreateReview(create_request(new_movie()), metadata=tokens.manager()),
        stub.DeleteReview(pb.DeleteReviewRequest(review_id=review.id), metadata=tokens.with_roles("judy")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_anonymous_list_and_get_are_allowed(stub: Stub, tokens: Tokens) -> None:
    movie_id = new_movie()
    review = await post(stub, tokens, "ken", movie_id)
    assert [r.id for r in (await stub.ListReviews(pb.ListReviewsRequest(movie_id=movie_id))).reviews] == [review.id]
    # A bad token on a public method leaves the caller anonymous rather than failing the read.
    bad = (("authorization", "Bearer not-a-jwt"),)
    assert (await stub.GetReview(pb.GetReviewRequest(review_id=review.id), metadata=bad)).review.id == review.id
