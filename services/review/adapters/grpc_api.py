"""The gRPC API of reviews: cinema.review.v1.ReviewService.

Thin: validate the request against its contract (protovalidate rules: rating 1..5, text up to
2,000 characters, UUID ids, page size), name the caller from the verified token, call the use
case, turn the result into protobuf. Domain errors become statuses in the kit's interceptor.

| RPC          | who                                   | errors of note                              |
|--------------|---------------------------------------|---------------------------------------------|
| CreateReview | role `customer`                       | ALREADY_EXISTS (one per customer per movie) |
| GetReview    | anyone, anonymous included (public)   | NOT_FOUND (unknown or deleted)              |
| ListReviews  | anyone, anonymous included (public)   | INVALID_ARGUMENT `page_token`               |
| DeleteReview | `customer` (own) or `manager` (any)   | PERMISSION_DENIED (another's), NOT_FOUND    |

No token on CreateReview/DeleteReview: UNAUTHENTICATED; a token without the role:
PERMISSION_DENIED. The author's display name comes from the token's `name` claim (or
`preferred_username`), and may be empty.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.review.v1 import review_pb2 as pb
from cinema.review.v1 import review_pb2_grpc as pb_grpc
from services.kit.auth import current_caller
from services.kit.caller import Caller, require_role
from services.kit.validation import validate
from services.review.domain.review import Review
from services.review.service_layer import reviews
from services.review.service_layer.reviews import Author, DeleteReview, PostReview, ReviewDependencies

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReviewService"].full_name
PUBLIC_METHODS = (f"/{SERVICE_NAME}/GetReview", f"/{SERVICE_NAME}/ListReviews")

Context = grpc.aio.ServicerContext[Any, Any]


def _author(caller: Caller) -> Author:
    name = caller.claims.get("name") or caller.claims.get("preferred_username") or ""
    return Author(
        subject=caller.subject or "",
        is_manager=caller.has_role("manager"),
        name=name if isinstance(name, str) else "",
    )


def review_proto(review: Review) -> pb.Review:
    created = Timestamp()
    created.FromDatetime(review.created_at)
    return pb.Review(
        id=review.id,
        movie_id=review.movie_id,
        customer_id=review.customer_id,
        author_name=review.author_name,
        rating=review.rating,
        text=review.text,
        create_time=created,
    )


class ReviewServicer(pb_grpc.ReviewServiceServicer):
    def __init__(self, deps: ReviewDependencies) -> None:
        self._deps = deps

    async def CreateReview(self, request: pb.CreateReviewRequest, context: Context) -> Any:
        validate(request)
        author = _author(require_role(current_caller(), "customer"))
        review = await reviews.post_review(
            PostReview(
                author=author,
                movie_id=request.movie_id,
                rating=request.review.rating,
                text=request.review.text,
                request_id=request.request_id,
            ),
            self._deps,
        )
        return pb.CreateReviewResponse(review=review_proto(review))

    async def GetReview(self, request: pb.GetReviewRequest, context: Context) -> Any:
        validate(request)
        review = await reviews.get_review(request.review_id, self._deps)
        return pb.GetReviewResponse(review=review_proto(review))

    async def ListReviews(self, request: pb.ListReviewsRequest, context: Context) -> Any:
        validate(request)
        page = await reviews.list_reviews(request.movie_id, request.page_size, request.page_token, self._deps)
        return pb.ListReviewsResponse(
            reviews=[review_proto(r) for r in page.reviews], next_page_token=page.next_page_token
        )

    async def DeleteReview(self, request: pb.DeleteReviewRequest, context: Context) -> Any:
        validate(request)
        author = _author(require_role(current_caller(), "customer", "manager"))
        await reviews.delete_review(DeleteReview(author=author, review_id=request.review_id), self._deps)
        return pb.DeleteReviewResponse()


def register(server: grpc.aio.Server, deps: ReviewDependencies) -> list[str]:
    pb_grpc.add_ReviewServiceServicer_to_server(ReviewServicer(deps), server)
    return [SERVICE_NAME]
