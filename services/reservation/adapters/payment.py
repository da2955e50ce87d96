"""The payment gateway: cinema.payment.v1.PaymentService over grpc.aio, through the mesh.

One channel per process, to the address from settings (locally the Envoy listener in front of
payment). Every call carries a deadline, the service bearer token (read from a file, or from
an OAuth2 token endpoint by services.kit.oauth_client), and the trace context (the kit's
client interceptors). Whatever keeps payment from answering —
refused connection, UNAVAILABLE, DEADLINE_EXCEEDED, the mesh's breaker overflow
(RESOURCE_EXHAUSTED or UNAVAILABLE from Envoy), payment's own admission refusal, a bad token of
ours — becomes PaymentUnavailable (with payment's retry hint when it gave one), so the use case
decides whether to try again or answer the caller, instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Protocol

import grpc
import grpc.aio
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from cinema.payment.v1 import payment_pb2, payment_pb2_grpc
from services.kit import telemetry
from services.kit.errors import FieldViolation, InvalidArgument, Unavailable
from services.kit.grpc_errors import find_detail
from services.reservation.adapters.outbox import money_proto
from services.reservation.domain.values import Money
from services.reservation.service_layer.ports import (
    PaymentCard,
    PaymentResult,
    PaymentStatus,
    PaymentUnavailable,
)

log = logging.getLogger(__name__)

# Reconnect quickly once payment is back: with gRPC's default backoff (up to 120 s) a channel
# that saw payment down keeps failing fast long after payment has returned.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)

_STATES = {
    payment_pb2.PAYMENT_STATE_APPROVED: PaymentStatus.APPROVED,
    payment_pb2.PAYMENT_STATE_DECLINED: PaymentStatus.DECLINED,
    payment_pb2.PAYMENT_STATE_REFUNDED: PaymentStatus.REFUNDED,
}


class BearerTokenSource(Protocol):
    """Where the service token for payment comes from ("" = none)."""

    async def token(self) -> str: ...


class TokenFile:
    """The bearer token for payment, from a file that an operator (or a secret mount) rotates.

    Re-read when its modification time changes, checked at most once per `check_every_s`.
    """

    def __init__(self, path: str, check_every_s: float = 1.0) -> None:
        self._path = Path(path) if path else None
        self._check_every_s = check_every_s
        self._token = ""
        self._mtime_ns = -1
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def _due(self) -> bool:
        return time.monotonic() - self._checked_at >= self._check_every_s

    async def token(self) -> str:
        if self._path is None:
            return ""
        if self._due():
            # Callers arriving during a reload wait for it rather than go out with no token.
            async with self._lock:
                if self._due():
                    await asyncio.to_thread(self._reload_if_changed)
                    self._checked_at = time.monotonic()
        return self._token

    def _reload_if_changed(self) -> None:
        assert self._path is not None
        try:
            mtime_ns = os.stat(self._path).st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._token = self._path.read_text(encoding="utf-8").strip()
                self._mtime_ns = mtime_ns
        except OSError as error:
            log.warning("cannot read the payment token file: %s", error)


def _result(payment: payment_pb2.Payment) -> PaymentResult:
    status = _STATES.get(payment.state)
    if status is None:
        raise PaymentUnavailable(f"payment {payment.id} has no known state ({payment.state})")
    return PaymentResult(status, payment.id, payment.decline_reason or None)


def _invalid_argument(error: grpc.aio.AioRpcError) -> InvalidArgument:
    """Payment's INVALID_ARGUMENT as ours, with its field violations (e.g. `card.number`)."""
    bad_request = find_detail(error, error_details_pb2.BadRequest)
    violations = tuple(
        FieldViolation(v.field, v.description) for v in (bad_request.field_violations if bad_request else ())
    )
    if not violations:
        violations = (FieldViolation("card", error.details() or "rejected by payment"),)
    return InvalidArgument(error.details() or "payment rejected the request", violations)


class GrpcPaymentGateway:
    """PaymentGateway port over one grpc.aio channel; `close()` at shutdown."""

    def __init__(self, address: str, tokens: BearerTokenSource) -> None:
        self._address = address
        self._tokens = tokens
        self._channel = grpc.aio.insecure_channel(
            address, options=list(CHANNEL_OPTIONS), interceptors=telemetry.client_interceptors()
        )
        self._stub = payment_pb2_grpc.PaymentServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def _metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            token = await self._tokens.token()
        except Unavailable as error:  # no token to be had (identity down): payment is out of reach
            raise PaymentUnavailable(f"no service token for payment: {error.message}") from None
        return (("authorization", f"Bearer {token}"),) if token else ()

    async def authorize(
        self,
        reservation_id: str,
        customer_id: str,
        customer_email: str,
        amount: Money,
        card: PaymentCard,
        deadline_s: float,
    ) -> PaymentResult:
        request = payment_pb2.AuthorizePaymentRequest(
            reservation_id=reservation_id,
            customer_id=customer_id,
            customer_email=customer_email,
            amount=money_proto(amount),
            card=payment_pb2.Card(
                number=card.number, expiry_month=card.expiry_month, expiry_year=card.expiry_year, cvc=card.cvc
            ),
            # Payment is idempotent per reservation; the reservation id is the natural key of
            # every attempt for it, retries included.
            request_id=reservation_id,
        )
        try:
            response = await self._stub.AuthorizePayment(request, timeout=deadline_s, metadata=await self._metadata())
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
                raise _invalid_argument(error) from None
            raise self._unavailable("AuthorizePayment", reservation_id, error) from None
        except TimeoutError as error:
            raise PaymentUnavailable(f"payment call failed: {error!r}", slow=True) from None
        except (OSError, RuntimeError) as error:
            raise PaymentUnavailable(f"payment call failed: {error!r}") from None
        return _result(response.payment)

    async def find_by_reservation(self, reservation_id: str, deadline_s: float) -> PaymentResult | None:
        request = payment_pb2.GetPaymentByReservationRequest(reservation_id=reservation_id)
        try:
            response = await self._stub.GetPaymentByReservation(
                request, timeout=deadline_s, metadata=await self._metadata()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise self._unavailable("GetPaymentByReservation", reservation_id, error) from None
        except (TimeoutError, OSError, RuntimeError) as error:
            raise PaymentUnavailable(f"payment call failed: {error!r}") from None
        return _result(response.payment)

    def _unavailable(self, method: str, reservation_id: str, error: grpc.aio.AioRpcError) -> PaymentUnavailable:
        code = error.code()
        transient = {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.CANCELLED,
        }
        # Anything else (our token rejected, an amount mismatch, an internal error) is not the
        # caller's fault either and leaves the outcome to the reconciler; but it is a bug or a
        # misconfiguration, so it is logged louder.
        level = logging.INFO if code in transient else logging.ERROR
        log.log(
            level,
            "payment %s failed: %s %s",
            method,
            code.name if code else "?",
            error.details(),
            extra={"reservation_id": reservation_id, "payment_address": self._address},
        )
        details = error.details() or ""
        # DEADLINE_EXCEEDED from payment or the mesh; Envoy's per-try timeout arrives as
        # UNAVAILABLE "upstream request timeout". Either way payment may still be at work.
        slow = code is grpc.StatusCode.DEADLINE_EXCEEDED or (
            code is grpc.StatusCode.UNAVAILABLE and "timeout" in details.lower()
        )
        return PaymentUnavailable(
            f"payment {method}: {code.name if code else '?'}: {details}", slow=slow, retry_after_s=_retry_hint(error)
        )


def _retry_hint(error: grpc.aio.AioRpcError) -> float | None:
    """Payment's google.rpc.RetryInfo in seconds, if it sent one (e.g. refused while at its limit)."""
    info = find_detail(error, error_details_pb2.RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return None
    seconds: float = info.retry_delay.ToTimedelta().total_seconds()
    return max(0.0, seconds)
