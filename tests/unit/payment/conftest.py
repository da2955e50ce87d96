"""Fixtures of the payment unit tests."""

from __future__ import annotations

import pytest

from services.payment.service_layer.payments import PaymentDependencies
from services.payment.service_layer.ports import UnitOfWork

from .fakes import FakeCardProcessor, FakeClock, FakePaymentStore, FakePaymentUnitOfWork


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakePaymentStore:
    return FakePaymentStore()


@pytest.fixture
def processor() -> FakeCardProcessor:
    return FakeCardProcessor()


@pytest.fixture
def deps(store: FakePaymentStore, processor: FakeCardProcessor, clock: FakeClock) -> PaymentDependencies:
    counter = iter(range(1, 1_000_000))

    def uow() -> UnitOfWork:
        return FakePaymentUnitOfWork(store)

    return PaymentDependencies(uow=uow, processor=processor, clock=clock, new_id=lambda: f"pay-{next(counter)}")
