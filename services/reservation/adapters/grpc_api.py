"""The gRPC API of booking: cinema.reservation.v1.ReservationService.

Thin: validate the request against its contract (protovalidate rules), name the caller from the
verified token, call the use case, turn the result into protobuf. Domain errors raised by the
use cases become statuses in the kit's error-mapping interceptor.

Who may call: every RPC but GetSeatAvailability needs a token with role `customer` or
`manager`; a customer sees and cancels only their own reservations (another's is NOT_FOUND), a
manager may read and cancel any. GetSeatAvailability is public, like browsing the catalog: it
tells only which seats are taken, never by whom.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from cinema.common.v1.seat_pb2 import SeatMap as SeatMapProto
from cinema.reservation.v1 import reservation_pb2 as pb
from cinema.reservation.v1 import reservation_pb2_grpc as pb_grpc
from services.kit.auth import current_caller
from services.kit.caller import require_role
from services.kit.validation import validate
from services.reservation.adapters.outbox import money_proto, timestamp
from services.reservation.adapters.postgres import store_outage_is_unavailable
from services.reservation.domain.reservation import Reservation, ReservationState
from services.reservation.service_layer import booking
from services.reservation.service_layer.commands import (
    Caller,
    CancelReservation,
    CreateReservation,
    GetReservation,
    GetSeatAvailability,
    ListReservations,
)
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.manager_view import ListScreeningReservations, list_screening_reservations
from services.reservation.service_layer.ports import PaymentCard

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReservationService"].full_name
PUBLIC_METHODS = (f"/{SERVICE_NAME}/GetSeatAvailability",)

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    ReservationState.PENDING: pb.RESERVATION_STATE_PENDING,
    ReservationState.CONFIRMED: pb.RESERVATION_STATE_CONFIRMED,
    ReservationState.CANCELLED: pb.RESERVATION_STATE_CANCELLED,
    ReservationState.FAILED: pb.RESERVATION_STATE_FAILED,
}
# ListScreeningReservations' `state` filter: UNSPECIFIED (absent here) lists every state.
_STATE_FILTERS = {number: state for state, number in _STATES.items()}


def booking_caller() -> Caller:
    """Booking's caller from the kit's: subject, manager or not, e-mail from the `email` claim."""
    caller = require_role(current_caller(), "customer", "manager")
    email = caller.claims.get("email")
    return Caller(
        subject=caller.subject or "",
        is_manager=caller.has_role("manager"),
        email=email if isinstance(email, str) else "",
    )


def reservation_proto(reservation: Reservation) -> pb.Reservation:
    message = pb.Reservation(
        id=reservation.id,
        customer_id=reservation.customer_id,
        screening_id=reservation.screening_id,
        seats=[str(seat) for seat in reservation.seats],
        state=_STATES[reservation.state],
        amount=money_proto(reservation.amount),
        movie_id=reservation.screening.movie_id,
        movie_title=reservation.screening.movie_title,
        hall=reservation.screening.hall,
        start_time=timestamp(reservation.screening.starts_at),
        payment_id=reservation.payment_id or "",
        reason=reservation.failure_reason or reservation.cancel_reason or "",
        create_time=timestamp(reservation.created_at),
    )
    if reservation.updated_at is not None:
        message.update_time.CopyFrom(timestamp(reservation.updated_at))
    return message


Handler = Callable[["ReservationServicer", Any, Context], Awaitable[Any]]


def _store_outage_is_unavailable(method: Handler) -> Handler:
    """A database that is restarting or unreachable answers UNAVAILABLE with a retry hint, not INTERNAL."""

    @functools.wraps(method)
    async def handler(self: ReservationServicer, request: Any, context: Context) -> Any:
        with store_outage_is_unavailable(self._deps.retry_after_s):
            return await method(self, request, context)

    return handler


class ReservationServicer(pb_grpc.ReservationServiceServicer):
    def __init__(self, deps: BookingDependencies) -> None:
        self._deps = deps

    @_store_outage_is_unavailable
    async def CreateReservation(self, request: pb.CreateReservationRequest, context: Context) -> Any:
        validate(request)
        caller = booking_caller()
        card = request.card
        reservation = await booking.create_reservation(
            CreateReservation(
                caller=caller,
                screening_id=request.screening_id,
                seats=list(request.seats),
                request_id=request.request_id,
                card=PaymentCard(card.number, card.expiry_month, card.expiry_year, card.cvc),
                time_budget_s=context.time_remaining(),
            ),
            self._deps,
        )
        return pb.CreateReservationResponse(reservation=reservation_proto(reservation))

    @_store_outage_is_unavailable
    async def GetReservation(self, request: pb.GetReservationRequest, context: Context) -> Any:
        validate(request)
        reservation = await booking.get_reservation(
            GetReservation(caller=booking_caller(), reservation_id=request.reservation_id), self._deps
        )
        return pb.GetReservationResponse(reservation=reservation_proto(reservation))

    @_store_outage_is_unavailable
    async def ListReservations(self, request: pb.ListReservationsRequest, context: Context) -> Any:
        validate(request)
        page = await booking.list_reservations(
            ListReservations(caller=booking_caller(), page_size=request.page_size, page_token=request.page_token),
            self._deps,
        )
        return pb.ListReservationsResponse(
            reservations=[reservation_proto(r) for r in page.reservations], next_page_token=page.next_page_token
        )

    @_store_outage_is_unavailable
    async def CancelReservation(self, request: pb.CancelReservationRequest, context: Context) -> Any:
        validate(request)
        reservation = await booking.cancel_reservation(
            CancelReservation(caller=booking_caller(), reservation_id=request.reservation_id, reason=request.reason),
            self._deps,
        )
        return pb.CancelReservationResponse(reservation=reservation_proto(reservation))

    @_store_outage_is_unavailable
    async def ListScreeningReservations(self, request: pb.ListScreeningReservationsRequest, context: Context) -> Any:
        validate(request)
        caller = booking_caller()
        view = self._deps.screening_reservations
        assert view is not None, "bootstrap wires the manager's view"
        page = await list_screening_reservations(
            ListScreeningReservations(
                caller=caller,
                screening_id=request.screening_id,
                state=_STATE_FILTERS.get(request.state),
                page_size=request.page_size,
                page_token=request.page_token,
            ),
            view,
            default_page_size=self._deps.default_page_size,
            max_page_size=self._deps.max_page_size,
        )
        return pb.ListScreeningReservationsResponse(
            reservations=[reservation_proto(r) for r in page.reservations], next_page_token=page.next_page_token
        )

    @_store_outage_is_unavailable
    async def GetSeatAvailability(self, request: pb.GetSeatAvailabilityRequest, context: Context) -> Any:
        validate(request)
        availability = await booking.get_seat_availability(
            GetSeatAvailability(screening_id=request.screening_id), self._deps
        )
        seat_map = availability.seat_map
        return pb.GetSeatAvailabilityResponse(
            screening_id=availability.screening_id,
            seat_map=SeatMapProto(
                rows=seat_map.rows,
                seats_per_row=seat_map.seats_per_row,
                blocked_seats=[str(seat) for seat in availability.blocked],
            ),
            taken_seats=[str(seat) for seat in availability.taken],
            # Nothing can be reserved once the screening is cancelled or has started.
            free_seat_count=availability.free_count if availability.bookable else 0,
            total_seat_count=availability.total_count,
            price=money_proto(availability.price),
        )


def register(server: grpc.aio.Server, deps: BookingDependencies) -> list[str]:
    pb_grpc.add_ReservationServiceServicer_to_server(ReservationServicer(deps), server)
    return [SERVICE_NAME]
