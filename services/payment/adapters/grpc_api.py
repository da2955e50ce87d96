"""The gRPC face of the payment service: `cinema.payment.v1.PaymentService`.

Each handler checks the caller's role (`service`, i.e. another Cinema service such as
reservation, or `manager`), validates the request against the contract's rules, translates it
into a command, runs the use case and translates the payment back. Domain errors leave as
they are: the kit's interceptor maps them to statuses. Responses carry the card's last four
digits only; the number and CVC exist only in the request and the `Card` built from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.common.v1 import money_pb2
from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from services.kit.auth import current_caller
from services.kit.caller import require_role
from services.kit.logging import bind_correlation
from services.kit.validation import validate
from services.payment.adapters.store import store_outage_is_unavailable
from services.payment.domain.payment import Payment, PaymentState
from services.payment.domain.values import Money
from services.payment.service_layer import payments as use_cases
from services.payment.service_layer.payments import AuthorizePayment, CardDetails, PaymentDependencies

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
ALLOWED_ROLES = ("service", "manager")

_STATES = {
    PaymentState.APPROVED: payment_pb2.PAYMENT_STATE_APPROVED,
    PaymentState.DECLINED: payment_pb2.PAYMENT_STATE_DECLINED,
    PaymentState.REFUNDED: payment_pb2.PAYMENT_STATE_REFUNDED,
}


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def payment_message(payment: Payment) -> payment_pb2.Payment:
    message = payment_pb2.Payment(
        id=payment.id,
        reservation_id=payment.reservation_id,
        customer_id=payment.customer_id,
        amount=money_pb2.Money(minor_units=payment.amount.amount_minor, currency_code=payment.amount.currency),
        state=_STATES[payment.state],
        card_last_four=payment.card_last4,
        decline_reason=payment.decline_reason or "",
        create_time=_timestamp(payment.created_at),
    )
    if payment.refunded_at is not None:
        message.refund_time.CopyFrom(_timestamp(payment.refunded_at))
    return message


def authorize_command(request: payment_pb2.AuthorizePaymentRequest) -> AuthorizePayment:
    card = request.card
    return AuthorizePayment(
        reservation_id=request.reservation_id,
        customer_id=request.customer_id,
        customer_email=request.customer_email,
        amount=Money(request.amount.minor_units, request.amount.currency_code),
        card=CardDetails(
            number=card.number, expiry_month=card.expiry_month, expiry_year=card.expiry_year, cvc=card.cvc
        ),
    )


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, deps: PaymentDependencies) -> None:
        self._deps = deps
        self._authorizations = use_cases.Authorizations()

    async def AuthorizePayment(
        self, request: payment_pb2.AuthorizePaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.AuthorizePaymentResponse:
        # Authorization before validation: a caller without the right learns nothing of the contract.
        require_role(current_caller(), *ALLOWED_ROLES)
        validate(request)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            # Reached us after the caller's deadline (queued, or this process was paused): the
            # caller counts on no authorization starting that late (see Authorizations).
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the authorization began")
        with (
            bind_correlation(request.reservation_id, reservation_id=request.reservation_id),
            store_outage_is_unavailable(self._deps.retry_after_s),
        ):
            # Runs to its end even if this call is cancelled (see use_cases.Authorizations).
            payment = await self._authorizations.authorize(authorize_command(request), self._deps)
        return payment_pb2.AuthorizePaymentResponse(payment=payment_message(payment))

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.GetPaymentResponse:
        require_role(current_caller(), *ALLOWED_ROLES)
        validate(request)
        with store_outage_is_unavailable(self._deps.retry_after_s):
            payment = await use_cases.get_payment(request.payment_id, self._deps)
        return payment_pb2.GetPaymentResponse(payment=payment_message(payment))

    async def GetPaymentByReservation(
        self, request: payment_pb2.GetPaymentByReservationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> payment_pb2.GetPaymentByReservationResponse:
        require_role(current_caller(), *ALLOWED_ROLES)
        validate(request)
        with (
            bind_correlation(request.reservation_id, reservation_id=request.reservation_id),
            store_outage_is_unavailable(self._deps.retry_after_s),
        ):
            payment = await use_cases.get_payment_by_reservation(request.reservation_id, self._deps)
        return payment_pb2.GetPaymentByReservationResponse(payment=payment_message(payment))


def register(server: grpc.aio.Server, deps: PaymentDependencies) -> list[str]:
    """Add the servicer to `server`; returns the service names for health and reflection."""
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(deps), server)
    return [SERVICE_NAME]
