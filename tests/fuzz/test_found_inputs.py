"""The inputs the fuzzer found breaking a service, replayed against the real processes.

Each one answered INTERNAL (with a traceback in the service's log) or left the stores
disagreeing before its fix; each must now be INVALID_ARGUMENT naming the field, and leave no
failure in any log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from cinema.common.v1.money_pb2 import Money
from cinema.movie.v1 import movie_pb2
from cinema.payment.v1 import payment_pb2
from cinema.reservation.v1 import reservation_pb2
from services.kit.grpc_errors import find_detail
from tests.fuzz.checks import error_problems, log_problems
from tests.fuzz.system import APPROVE, FuzzSystem, Seeded

pytestmark = pytest.mark.integration


def _update_movie_with_a_create_time_past_9999(s: Seeded) -> Message:
    request = movie_pb2.UpdateMovieRequest(movie=movie_pb2.Movie(id=s.movie_id, title="Arrival"))
    request.update_mask.paths.append("title")
    request.movie.create_time.seconds, request.movie.create_time.nanos = 253_402_300_799, 1_000_000_000
    return request


def _reschedule_with_nanos_of_a_whole_second(s: Seeded) -> Message:
    request = movie_pb2.RescheduleScreeningRequest(screening_id=s.screening_id)
    request.start_time.seconds, request.start_time.nanos = 1_900_000_000, 1_000_000_000
    return request


def _reschedule_to_a_nul_hall(s: Seeded) -> Message:
    request = movie_pb2.RescheduleScreeningRequest(screening_id=s.screening_id, hall="\x00")
    request.start_time.seconds = 1_900_000_000
    return request


def _movie_with_a_nul_in_its_title(s: Seeded) -> Message:
    return movie_pb2.CreateMovieRequest(movie=movie_pb2.Movie(title="A\x00B", duration_minutes=90))


def _cancel_with_a_nul_reason(s: Seeded) -> Message:
    return reservation_pb2.CancelReservationRequest(reservation_id=s.reservation_id, reason="\x00")


def _payment_for_a_customer_id_with_a_nul(s: Seeded) -> Message:
    return payment_pb2.AuthorizePaymentRequest(
        reservation_id=str(uuid.uuid4()),
        customer_id="a\x00",
        amount=Money(minor_units=1200, currency_code="EUR"),
        card=payment_pb2.Card(number=APPROVE, expiry_month=12, expiry_year=2035, cvc="123"),
        request_id=str(uuid.uuid4()),
    )


FOUND: list[tuple[str, str, str, Callable[[Seeded], Message], str]] = [
    # (service, method, role, request, the field the answer must name)
    (
        "cinema.movie.v1.MovieService",
        "UpdateMovie",
        "customer",
        _update_movie_with_a_create_time_past_9999,
        "movie.create_time",
    ),
    (
        "cinema.movie.v1.MovieService",
        "UpdateMovie",
        "manager",
        _update_movie_with_a_create_time_past_9999,
        "movie.create_time",
    ),
    (
        "cinema.movie.v1.MovieService",
        "RescheduleScreening",
        "manager",
        _reschedule_with_nanos_of_a_whole_second,
        "start_time",
    ),
    ("cinema.movie.v1.MovieService", "RescheduleScreening", "manager", _reschedule_to_a_nul_hall, "hall"),
    ("cinema.movie.v1.MovieService", "CreateMovie", "manager", _movie_with_a_nul_in_its_title, "movie.title"),
    ("cinema.reservation.v1.ReservationService", "CancelReservation", "customer", _cancel_with_a_nul_reason, "reason"),
    (
        "cinema.payment.v1.PaymentService",
        "AuthorizePayment",
        "service",
        _payment_for_a_customer_id_with_a_nul,
        "customer_id",
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "role", "build", "field"), FOUND, ids=lambda v: getattr(v, "__name__", v)
)
def test_a_found_input_is_refused_naming_its_field(
    fuzz_system: FuzzSystem,
    service: str,
    method: str,
    role: str,
    build: Callable[[Seeded], Message],
    field: str,
) -> None:
    process = fuzz_system.process_for(service)
    cursors = fuzz_system.log_cursors()
    request = build(fuzz_system.seeded)
    call = fuzz_system.channel(process).unary_unary(
        f"/{service}/{method}", request_serializer=lambda m: m.SerializeToString(), response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=fuzz_system.metadata(role), timeout=10)
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert not error_problems(err)
    bad_request = find_detail(err, error_details_pb2.BadRequest)
    assert bad_request is not None and field in [v.field for v in bad_request.field_violations], err.details()
    for name, cursor in cursors.items():
        assert not log_problems(cursor.new_lines(), name), f"the {name} log shows a failure"
