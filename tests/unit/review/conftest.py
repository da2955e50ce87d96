"""Fixtures of the review unit tests: the use cases' dependencies on fakes."""

from __future__ import annotations

import itertools

import pytest

from services.review.service_layer.reviews import ReviewDependencies

from .fakes import FakeClock, FakeOutbox, FakeReviewRepository


@pytest.fixture
def store() -> FakeReviewRepository:
    return FakeReviewRepository()


@pytest.fixture
def outbox() -> FakeOutbox:
    return FakeOutbox()


@pytest.fixture
def deps(store: FakeReviewRepository, outbox: FakeOutbox) -> ReviewDependencies:
    counter = itertools.count(1)
    return ReviewDependencies(
        reviews=store,
        clock=FakeClock(),
        outbox=outbox,
        new_id=lambda: f"00000000-0000-4000-8000-{next(counter):012d}",
        default_page_size=3,
        max_page_size=5,
    )
