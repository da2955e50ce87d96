"""Fixtures of the review unit tests: the use cases' dependencies on fakes."""

from __future__ import annotations

import itertools

import pytest

from services.review.service_layer.reviews import ReviewDependencies

from .fakes import FakeClock, FakeMovieCatalog, FakeOutbox, FakeReviewRepository

# the movies the use-case tests review (the catalog's replica knows them)
MOVIES = ("0b6a1c8e-3f5d-4a47-9f8e-1c2d3e4f5a6b", "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6")


@pytest.fixture
def store() -> FakeReviewRepository:
    return FakeReviewRepository()


@pytest.fixture
def outbox() -> FakeOutbox:
    return FakeOutbox()


@pytest.fixture
def catalog() -> FakeMovieCatalog:
    return FakeMovieCatalog(registered=set(MOVIES))


@pytest.fixture
def deps(store: FakeReviewRepository, outbox: FakeOutbox, catalog: FakeMovieCatalog) -> ReviewDependencies:
    counter = itertools.count(1)
    return ReviewDependencies(
        reviews=store,
        clock=FakeClock(),
        outbox=outbox,
        catalog=catalog,
        new_id=lambda: f"00000000-0000-4000-8000-{next(counter):012d}",
        default_page_size=3,
        max_page_size=5,
    )
