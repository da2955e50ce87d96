"""Fixtures of the booking unit tests: a fake store holding one screening, a fake payment, a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from services.reservation.domain.screening import Screening
from services.reservation.domain.values import Money, SeatMap
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.ports import UnitOfWork

from .fakes import FakeBookingStore, FakeClock, FakePaymentGateway, FakeUnitOfWork

SCREENING_ID = "scr-1"
PRICE = Money(1200, "EUR")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def screening(clock: FakeClock) -> Screening:
    return Screening(
        id=SCREENING_ID,
        movie_id="mov-1",
        movie_title="Metropolis",
        hall="Hall 1",
        starts_at=clock.now() + timedelta(hours=2),
        seat_map=SeatMap.of(5, 10, blocked=["B5"]),
        price=PRICE,
        version=1,
    )


@pytest.fixture
def store(screening: Screening) -> FakeBookingStore:
    store = FakeBookingStore()
    store.screenings[screening.id] = screening
    return store


@pytest.fixture
def payments() -> FakePaymentGateway:
    return FakePaymentGateway()


@pytest.fixture
async def deps(
    store: FakeBookingStore, payments: FakePaymentGateway, clock: FakeClock
) -> AsyncIterator[BookingDependencies]:
    counter = iter(range(1, 1_000_000))

    def uow() -> UnitOfWork:
        return FakeUnitOfWork(store)

    deps = BookingDependencies(
        uow=uow,
        payments=payments,
        clock=clock,
        new_id=lambda: f"res-{next(counter)}",
        payment_deadline_s=0.05,
        payment_grace_s=0.05,
        payment_wait_s=0.3,
        payment_retry_pause_s=0.02,
        retry_after_s=3.0,
    )
    yield deps
    await deps.payments_in_progress.close()  # authorizations a test left running in the background
