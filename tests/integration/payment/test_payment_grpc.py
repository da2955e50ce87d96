"""PaymentService over real gRPC, PostgreSQL and NATS: test cards, idempotency, errors, roles, no card number."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import TYPE_CHECKING

import asyncpg
import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from nats.js.client import JetStreamContext

from cinema.payment.v1 import events_pb2, payment_pb2
from services.kit.errors import Unavailable
from services.kit.events import envelope as env
from services.kit.grpc_errors import find_detail
from services.payment.adapters.grpc_api import authorize_command
from services.payment.adapters.processor import SimulatedCardProcessor
from services.payment.bootstrap import PaymentApp
from services.payment.domain.processor import CARD_APPROVED, CARD_INSUFFICIENT_FUNDS, CARD_PROCESSOR_ERROR
from services.payment.service_layer import payments as use_cases
from tests.integration.payment.conftest import Metadata
from tests.integration.payment.helpers import TEST_CARDS, authorize_request, card, payment_events_of
from tests.support.polling import eventually
from tests.support.servers import Server

if TYPE_CHECKING:
    from cinema.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub

pytestmark = pytest.mark.integration


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def table_counts(pool: asyncpg.Pool) -> tuple[int, int]:
    return (await pool.fetchval("SELECT count(*) FROM payments"), await pool.fetchval("SELECT count(*) FROM outbox"))


async def test_approved_card_is_charged_stored_without_its_number_and_announced(
    stub: PaymentServiceAsyncStub,
    service_token: Metadata,
    processor: SimulatedCardProcessor,
    pool: asyncpg.Pool,
    js: JetStreamContext,
) -> None:
    request = authorize_request(number=CARD_APPROVED)
    response = await stub.AuthorizePayment(request, metadata=service_token, timeout=5)
    payment = response.payment
    assert payment.state == payment_pb2.PAYMENT_STATE_APPROVED
    assert payment.reservation_id == request.reservation_id
    assert payment.customer_id == "customer-1"
    assert (payment.amount.minor_units, payment.amount.currency_code) == (2400, "EUR")
    assert payment.card_last_four == "4242"
    assert payment.decline_reason == ""
    assert payment.HasField("create_time") and not payment.HasField("refund_time")
    uuid.UUID(payment.id)
    assert CARD_APPROVED.encode() not in response.SerializeToString()
    assert processor.charges[request.reservation_id] == 1

    got = await stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=payment.id), metadata=service_token, timeout=5)
    assert got.payment == payment

    row = await pool.fetchrow("SELECT * FROM payments WHERE id = $1", uuid.UUID(payment.id))
    assert row is not None
    assert (row["state"], row["card_last4"], row["card_brand"], row["version"]) == ("APPROVED", "4242", "visa", 1)

    [envelope] = await payment_events_of(js, "cinema.payment.authorized", request.reservation_id)
    assert envelope.type == "cinema.payment.v1.PaymentAuthorized"
    assert (envelope.aggregate_id, envelope.aggregate_version) == (payment.id, 1)
    event = env.unwrap(envelope)
    assert isinstance(event, events_pb2.PaymentAuthorized)
    assert (event.payment_id, event.card_last_four, event.amount.minor_units) == (payment.id, "4242", 2400)


async def test_insufficient_funds_is_a_declined_payment_not_an_error(
    stub: PaymentServiceAsyncStub,
    service_token: Metadata,
    processor: SimulatedCardProcessor,
    js: JetStreamContext,
) -> None:
    request = authorize_request(number=CARD_INSUFFICIENT_FUNDS)
    payment = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    assert payment.state == payment_pb2.PAYMENT_STATE_DECLINED
    assert payment.decline_reason == "insufficient_funds"
    assert payment.card_last_four == "9995"
    assert processor.charges[request.reservation_id] == 0

    [envelope] = await payment_events_of(js, "cinema.payment.declined", request.reservation_id)
    event = env.unwrap(envelope)
    assert isinstance(event, events_pb2.PaymentDeclined)
    assert event.decline_reason == "insufficient_funds"


async def test_processor_error_is_unavailable_with_retry_info_and_stores_nothing(
    stub: PaymentServiceAsyncStub, service_token: Metadata, pool: asyncpg.Pool
) -> None:
    before = await table_counts(pool)
    request = authorize_request(number=CARD_PROCESSOR_ERROR)
    error = await rpc_error(stub.AuthorizePayment(request, metadata=service_token, timeout=5))
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    retry = find_detail(error, error_details_pb2.RetryInfo)
    assert retry is not None and retry.retry_delay.ToNanoseconds() > 0
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "PROCESSOR_UNAVAILABLE"
    assert await table_counts(pool) == before
    missing = await rpc_error(
        stub.GetPaymentByReservation(
            payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id),
            metadata=service_token,
            timeout=5,
        )
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND


async def test_injected_failures_never_store_or_charge(
    stub: PaymentServiceAsyncStub, service_token: Metadata, processor: SimulatedCardProcessor, pool: asyncpg.Pool
) -> None:
    before = await table_counts(pool)
    processor.failure_rate = 1.0
    try:
        error = await rpc_error(stub.AuthorizePayment(authorize_request(), metadata=service_token, timeout=5))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        processor.failure_rate = 0.0
    assert await table_counts(pool) == before


async def test_an_authorization_outlives_its_callers_deadline_and_a_repeat_joins_it(
    stub: PaymentServiceAsyncStub, service_token: Metadata, processor: SimulatedCardProcessor, pool: asyncpg.Pool
) -> None:
    """A busy payment (here: a slow processor) must not lose the sale at the caller's deadline."""
    processor.latency_ms = 600
    try:
        request = authorize_request()
        error = await rpc_error(stub.AuthorizePayment(request, metadata=service_token, timeout=0.1))
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The repeat (reservation's next attempt) joins the authorization still in progress.
        repeat = (await stub.AuthorizePayment(request, metadata=service_token, timeout=10)).payment
    finally:
        processor.latency_ms = 0
    assert repeat.state == payment_pb2.PAYMENT_STATE_APPROVED
    assert processor.charges[request.reservation_id] == 1
    found = await stub.GetPaymentByReservation(
        payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id),
        metadata=service_token,
        timeout=5,
    )
    assert found.payment.id == repeat.id
    stored = await pool.fetchval(
        "SELECT count(*) FROM payments WHERE reservation_id = $1", uuid.UUID(request.reservation_id)
    )
    assert stored == 1


async def test_an_abandoned_call_still_leaves_its_outcome_for_the_reconciler(
    stub: PaymentServiceAsyncStub, service_token: Metadata, processor: SimulatedCardProcessor
) -> None:
    processor.latency_ms = 300
    try:
        request = authorize_request()
        error = await rpc_error(stub.AuthorizePayment(request, metadata=service_token, timeout=0.05))
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        processor.latency_ms = 0
    lookup = payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id)

    async def recorded() -> bool:
        try:
            reply = await stub.GetPaymentByReservation(lookup, metadata=service_token, timeout=5)
        except grpc.aio.AioRpcError as err:
            assert err.code() is grpc.StatusCode.NOT_FOUND
            return False
        return bool(reply.payment.state == payment_pb2.PAYMENT_STATE_APPROVED)

    await eventually(recorded, within_s=15)
    assert processor.charges[request.reservation_id] == 1


async def test_past_its_limit_an_authorization_is_abandoned_uncharged(
    app: PaymentApp, processor: SimulatedCardProcessor, pool: asyncpg.Pool
) -> None:
    """The bound reservation relies on: no authorization is approved later than this after it began."""
    deps = dataclasses.replace(app.deps, authorization_limit_s=0.1)
    request = authorize_request()
    before = await table_counts(pool)
    processor.latency_ms = 400
    try:
        with pytest.raises(Unavailable) as raised:
            await use_cases.authorize_payment(authorize_command(request), deps)
    finally:
        processor.latency_ms = 0
    assert raised.value.reason == "PROCESSOR_UNAVAILABLE"
    await asyncio.sleep(0.5)
    assert processor.charges[request.reservation_id] == 0
    assert await table_counts(pool) == before


async def test_authorize_is_idempotent_per_reservation_even_when_concurrent(
    stub: PaymentServiceAsyncStub, service_token: Metadata, processor: SimulatedCardProcessor, pool: asyncpg.Pool
) -> None:
    request = authorize_request()
    first = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    again = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    assert again == first

    processor.latency_ms = 50  # so the concurrent first calls overlap at the processor
    try:
        racing = authorize_request()
        responses = await asyncio.gather(
            *(stub.AuthorizePayment(racing, metadata=service_token, timeout=10) for _ in range(12))
        )
    finally:
        processor.latency_ms = 0
    assert len({r.payment.id for r in responses}) == 1
    for reservation_id in (request.reservation_id, racing.reservation_id):
        assert processor.charges[reservation_id] == 1
        stored = await pool.fetchval(
            "SELECT count(*) FROM payments WHERE reservation_id = $1", uuid.UUID(reservation_id)
        )
        assert stored == 1
        events = await pool.fetchval(
            "SELECT count(*) FROM outbox o JOIN payments p ON o.aggregate_id = p.id::text WHERE p.reservation_id = $1",
            uuid.UUID(reservation_id),
        )
        assert events == 1


async def test_a_declined_payment_stays_declined_on_retry(
    stub: PaymentServiceAsyncStub, service_token: Metadata
) -> None:
    request = authorize_request(number=CARD_INSUFFICIENT_FUNDS)
    first = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    retry = authorize_request(request.reservation_id, number=CARD_APPROVED)
    again = (await stub.AuthorizePayment(retry, metadata=service_token, timeout=5)).payment
    assert again == first and again.state == payment_pb2.PAYMENT_STATE_DECLINED


async def test_another_amount_for_a_paid_reservation_is_amount_mismatch(
    stub: PaymentServiceAsyncStub, service_token: Metadata, pool: asyncpg.Pool
) -> None:
    request = authorize_request(amount_minor=2400)
    payment = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    before = await table_counts(pool)
    other = authorize_request(request.reservation_id, amount_minor=3600)
    error = await rpc_error(stub.AuthorizePayment(other, metadata=service_token, timeout=5))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = find_detail(error, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "AMOUNT_MISMATCH"
    assert info.metadata["payment"] == payment.id and info.metadata["amount_minor"] == "2400"
    assert await table_counts(pool) == before


@pytest.mark.parametrize("method", ["AuthorizePayment", "GetPayment", "GetPaymentByReservation"])
async def test_customers_are_denied_and_anonymous_callers_unauthenticated(
    stub: PaymentServiceAsyncStub, customer_token: Metadata, pool: asyncpg.Pool, method: str
) -> None:
    request = {
        "AuthorizePayment": authorize_request(),
        "GetPayment": payment_pb2.GetPaymentRequest(payment_id=str(uuid.uuid4())),
        "GetPaymentByReservation": payment_pb2.GetPaymentByReservationRequest(reservation_id=str(uuid.uuid4())),
    }[method]
    before = await table_counts(pool)
    call = getattr(stub, method)
    denied = await rpc_error(call(request, metadata=customer_token, timeout=5))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    anonymous = await rpc_error(call(request, timeout=5))
    assert anonymous.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await table_counts(pool) == before


async def test_a_manager_may_read_and_authorize(stub: PaymentServiceAsyncStub, manager_token: Metadata) -> None:
    request = authorize_request()
    payment = (await stub.AuthorizePayment(request, metadata=manager_token, timeout=5)).payment
    by_reservation = await stub.GetPaymentByReservation(
        payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id),
        metadata=manager_token,
        timeout=5,
    )
    assert by_reservation.payment == payment


def _bad_requests() -> list[tuple[str, payment_pb2.AuthorizePaymentRequest]]:
    no_amount = authorize_request()
    no_amount.ClearField("amount")
    no_card = authorize_request()
    no_card.ClearField("card")
    bad_reservation = authorize_request()
    bad_reservation.reservation_id = "not-a-uuid"
    bad_request_id = authorize_request()
    bad_request_id.request_id = ""
    return [
        ("reservation_id", bad_reservation),
        ("request_id", bad_request_id),
        ("customer_id", authorize_request(customer_id="")),
        ("customer_email", authorize_request(customer_email="not an address")),
        ("amount", no_amount),
        ("amount.minor_units", authorize_request(amount_minor=-1)),
        ("amount.currency_code", authorize_request(currency="eur")),
        ("card", no_card),
        ("card.number", authorize_request(card_message=card("4242 4242 4242 4242"))),
        ("card.number", authorize_request(card_message=card("4242424242424241"))),  # Luhn checksum
        ("card.expiry_month", authorize_request(card_message=card(month=13))),
        ("card.expiry_year", authorize_request(card_message=card(year=2020))),  # expired
        ("card.cvc", authorize_request(card_message=card(cvc="12"))),
    ]


@pytest.mark.parametrize(("field", "request_message"), _bad_requests(), ids=lambda v: v if isinstance(v, str) else "")
async def test_bad_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    stub: PaymentServiceAsyncStub,
    service_token: Metadata,
    processor: SimulatedCardProcessor,
    pool: asyncpg.Pool,
    field: str,
    request_message: payment_pb2.AuthorizePaymentRequest,
) -> None:
    before = await table_counts(pool)
    error = await rpc_error(stub.AuthorizePayment(request_message, metadata=service_token, timeout=5))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = find_detail(error, error_details_pb2.BadRequest)
    assert bad_request is not None
    assert field in [v.field for v in bad_request.field_violations]
    assert request_message.card.number not in (error.details() or "") or not request_message.card.number
    assert await table_counts(pool) == before
    assert processor.charges[request_message.reservation_id] == 0


@pytest.mark.parametrize("method", ["GetPayment", "GetPaymentByReservation"])
async def test_reads_refuse_malformed_ids(stub: PaymentServiceAsyncStub, service_token: Metadata, method: str) -> None:
    request = {
        "GetPayment": payment_pb2.GetPaymentRequest(payment_id="p-1"),
        "GetPaymentByReservation": payment_pb2.GetPaymentByReservationRequest(reservation_id="r-1"),
    }[method]
    error = await rpc_error(getattr(stub, method)(request, metadata=service_token, timeout=5))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = find_detail(error, error_details_pb2.BadRequest)
    assert bad_request is not None
    assert [v.field for v in bad_request.field_violations] == [request.DESCRIPTOR.fields[0].name]


async def test_get_payment_by_reservation_finds_it_or_says_not_found(
    stub: PaymentServiceAsyncStub, service_token: Metadata
) -> None:
    request = authorize_request()
    payment = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    found = await stub.GetPaymentByReservation(
        payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id),
        metadata=service_token,
        timeout=5,
    )
    assert found.payment == payment
    unknown = str(uuid.uuid4())
    error = await rpc_error(
        stub.GetPaymentByReservation(
            payment_pb2.GetPaymentByReservationRequest(reservation_id=unknown), metadata=service_token, timeout=5
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    info = find_detail(error, error_details_pb2.ResourceInfo)
    assert info is not None and info.resource_type == "payment"
    error = await rpc_error(
        stub.GetPayment(payment_pb2.GetPaymentRequest(payment_id=unknown), metadata=service_token, timeout=5)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_no_card_number_anywhere_in_the_database(
    stub: PaymentServiceAsyncStub, service_token: Metadata, pool: asyncpg.Pool
) -> None:
    for number in TEST_CARDS:  # every outcome, so that every table has had its chance to store one
        with pytest.raises(grpc.aio.AioRpcError) if number == CARD_PROCESSOR_ERROR else _nothing():
            await stub.AuthorizePayment(authorize_request(number=number), metadata=service_token, timeout=5)
    tables = await pool.fetch(
        "SELECT quote_ident(table_name) AS name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    assert {"payments", "outbox", "inbox", "schema_migrations"} <= {t["name"] for t in tables}
    assert await pool.fetchval("SELECT count(*) FROM payments") > 0
    for table in tables:
        # Every column of every row, as text (bytea as its bytes decoded leniently, to catch ASCII digits).
        rows = await pool.fetch(f"SELECT t::text AS text FROM {table['name']} t")  # noqa: S608
        for row in rows:
            for number in TEST_CARDS:
                assert number not in row["text"], f"card number found in table {table['name']}"
    for envelope_bytes in await pool.fetch("SELECT envelope FROM outbox"):
        for number in TEST_CARDS:
            assert number.encode() not in envelope_bytes["envelope"]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_store_outage_answers_unavailable_never_internal_then_recovers(
    stub: PaymentServiceAsyncStub, service_token: Metadata, postgres_server: Server, payment_db: str
) -> None:
    request = authorize_request()
    payment = (await stub.AuthorizePayment(request, metadata=service_token, timeout=5)).payment
    read = payment_pb2.GetPaymentByReservationRequest(reservation_id=request.reservation_id)
    name = payment_db.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_server.url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        for call in (
            stub.GetPaymentByReservation(read, metadata=service_token, timeout=5),
            stub.AuthorizePayment(authorize_request(), metadata=service_token, timeout=5),
        ):
            error = await rpc_error(call)
            assert error.code() is grpc.StatusCode.UNAVAILABLE, error
            info = find_detail(error, error_details_pb2.ErrorInfo)
            assert info is not None and info.reason == "STORE_UNAVAILABLE"
            assert find_detail(error, error_details_pb2.RetryInfo) is not None
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    found = await stub.GetPaymentByReservation(read, metadata=service_token, timeout=5)
    assert found.payment == payment
