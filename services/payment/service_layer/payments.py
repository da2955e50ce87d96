"""Payment use cases: authorize (idempotent per reservation), read, refund once.

Authorization talks to the card processor outside any transaction (a network call must not
hold row locks), then stores the outcome. Idempotency per reservation has two guards: a
stored payment is returned as it is (the first outcome, approved or declined), and the
processor is given the reservation id as its own idempotency key, so that two concurrent
first calls for one reservation, on one payment instance or on two (the mesh retries a call
that was cut or stalled on the other instance), are charged once; the loser of the insert race
(the unique reservation id) returns the winner's payment.

An authorization, once started, runs to its end even when its caller goes away (its deadline
passed on a busy machine, the mesh cut the call): `Authorizations` runs each in its own task
and a repeat of the same request joins the one in progress. Otherwise a slow payment would be
thrown away at the caller's deadline and asked again from scratch, and reservation's reconciler
would find no outcome at all. The bound reservation relies on: an authorization starts only
while its call's deadline has not passed (the gRPC adapter checks), and its processor call is
cut at `authorization_limit_s` (nothing is charged past it), so reservation can tell when no
authorization it sent can still be approved.

A second call with the same reservation but a different amount is refused with
FailedPrecondition(AMOUNT_MISMATCH): the payment exists and cannot be changed, and the
caller's request conflicts with that state (ALREADY_EXISTS would suggest that returning the
payment is the whole answer, which for a different amount it is not).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from services.kit.actor import Actor
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.payment.domain.card import Card
from services.payment.domain.payment import Payment, RefundOutcome
from services.payment.domain.values import Money
from services.payment.service_layer.ports import (
    CardProcessor,
    Clock,
    DuplicatePayment,
    ProcessorUnavailable,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class PaymentDependencies:
    uow: UnitOfWorkFactory
    processor: CardProcessor
    clock: Clock
    new_id: Callable[[], str] = field(default=new_uuid)
    retry_after_s: float = 1.0  # hint in UNAVAILABLE when the processor fails
    # The card processor gets this long; past it the authorization is abandoned uncharged.
    authorization_limit_s: float = 5.0


# ------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CardDetails:
    """The card as the request carries it; only its last four digits show in repr."""

    number: str = field(repr=False)
    expiry_month: int = field(repr=False)
    expiry_year: int = field(repr=False)
    cvc: str = field(repr=False)

    def __repr__(self) -> str:
        return f"CardDetails(ending {self.number[-4:]})"

    __str__ = __repr__


@dataclass(frozen=True)
class AuthorizePayment:
    reservation_id: str
    customer_id: str
    amount: Money
    card: CardDetails
    customer_email: str = ""


@dataclass(frozen=True)
class RefundForCancelledReservation:
    """From a ReservationCancelled event."""

    reservation_id: str
    customer_email: str = ""
    cancelled_by: Actor | None = None  # who cancelled the reservation; None in events before attribution


@dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    payment: Payment | None


# ------------------------------------------------------------------------------- use cases


async def authorize_payment(cmd: AuthorizePayment, deps: PaymentDependencies) -> Payment:
    """The payment of the reservation: the stored one if any, else a new APPROVED or DECLINED one.

    Raises InvalidArgument (ids, card), FailedPrecondition AMOUNT_MISMATCH, or Unavailable
    when the processor fails (then nothing is stored, and a retry may try again).
    """
    if not cmd.reservation_id:
        raise InvalidArgument.for_field("reservation_id", "is required")
    if not cmd.customer_id:
        raise InvalidArgument.for_field("customer_id", "is required")
    existing = await _existing(cmd, deps)
    if existing is not None:
        return existing
    now = deps.clock.now()
    card = Card.parse(cmd.card.number, cmd.card.expiry_month, cmd.card.expiry_year, cmd.card.cvc, now=now)
    try:
        async with asyncio.timeout(deps.authorization_limit_s):
            response = await deps.processor.authorize(cmd.reservation_id, card, cmd.amount)
    except (ProcessorUnavailable, TimeoutError) as error:
        log.warning("card processor unavailable", extra={"reservation_id": cmd.reservation_id, "card": repr(card)})
        raise Unavailable(
            "the card processor is unavailable; nothing was charged",
            retry_after_s=deps.retry_after_s,
            reason="PROCESSOR_UNAVAILABLE",
        ) from error
    payment_id = deps.new_id()
    if response.approved:
        payment = Payment.approve(
            payment_id=payment_id,
            reservation_id=cmd.reservation_id,
            customer_id=cmd.customer_id,
            customer_email=cmd.customer_email,
            amount=cmd.amount,
            card=card,
            at=now,
        )
    else:
        payment = Payment.decline(
            payment_id=payment_id,
            reservation_id=cmd.reservation_id,
            customer_id=cmd.customer_id,
            customer_email=cmd.customer_email,
            amount=cmd.amount,
            card=card,
            reason=response.decline_reason or "declined",
            at=now,
        )
    async with deps.uow() as uow:
        try:
            await uow.payments.add(payment)
        except DuplicatePayment:
            pass  # a concurrent first call stored its payment first: return that one below
        else:
            await uow.commit()
            return payment
    twin = await _existing(cmd, deps)
    assert twin is not None  # the unique violation means it is stored
    return twin


class Authorizations:
    """The authorizations in progress in this process, each run to its end in its own task.

    `authorize` starts one, or joins the one in progress for the same request (same
    reservation, amount, card), and waits for it; if the waiting caller is cancelled (its
    deadline passed), the authorization goes on and stores its outcome, which a repeat or
    GetPaymentByReservation then reads.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[AuthorizePayment, asyncio.Task[Payment]]] = {}

    @property
    def in_progress(self) -> int:
        return len(self._running)

    async def authorize(self, cmd: AuthorizePayment, deps: PaymentDependencies) -> Payment:
        running = self._running.get(cmd.reservation_id)
        if running is not None and running[0] == cmd:
            task = running[1]
        else:
            # A different request for the same reservation runs on its own: the stored
            # payment and the processor's idempotency key still make it one charge.
            task = asyncio.create_task(authorize_payment(cmd, deps), name=f"authorize {cmd.reservation_id}")
            self._running[cmd.reservation_id] = (cmd, task)
            task.add_done_callback(lambda done: self._finished(cmd.reservation_id, done))
        return await asyncio.shield(task)

    def _finished(self, reservation_id: str, task: asyncio.Task[Payment]) -> None:
        running = self._running.get(reservation_id)
        if running is not None and running[1] is task:
            del self._running[reservation_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            # Retrieved here so that an outcome nobody waited for still leaves a trace.
            log.info("authorization ended with %s", type(error).__name__, extra={"reservation_id": reservation_id})


async def _existing(cmd: AuthorizePayment, deps: PaymentDependencies) -> Payment | None:
    async with deps.uow() as uow:
        payment = await uow.payments.get_by_reservation(cmd.reservation_id)
    if payment is not None and payment.amount != cmd.amount:
        raise FailedPrecondition(
            f"reservation {cmd.reservation_id} was already paid with another amount",
            reason="AMOUNT_MISMATCH",
            metadata={
                "reservation": cmd.reservation_id,
                "payment": payment.id,
                "amount_minor": str(payment.amount.amount_minor),
                "currency": payment.amount.currency,
            },
        )
    return payment


async def get_payment(payment_id: str, deps: PaymentDependencies) -> Payment:
    async with deps.uow() as uow:
        payment = await uow.payments.get(payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment


async def get_payment_by_reservation(reservation_id: str, deps: PaymentDependencies) -> Payment:
    """The reconciler of booking asks this; NotFound means payment never recorded one."""
    async with deps.uow() as uow:
        payment = await uow.payments.get_by_reservation(reservation_id)
    if payment is None:
        raise NotFound("payment", f"of reservation {reservation_id}")
    return payment


async def refund_for_cancelled_reservation(
    cmd: RefundForCancelledReservation, deps: PaymentDependencies
) -> RefundResult:
    """Refund the reservation's payment once (PaymentRefunded via the outbox).

    Unknown reservation, declined payment or a repeat: a no-op whose outcome says which, so
    the consumer acks the event either way.
    """
    async with deps.uow() as uow:
        payment = await uow.payments.get_by_reservation(cmd.reservation_id, lock=True)
        if payment is None:
            return RefundResult(RefundOutcome.NO_PAYMENT, None)
        outcome = payment.refund(deps.clock.now(), cmd.customer_email, cmd.cancelled_by)
        if outcome is RefundOutcome.REFUNDED:
            await uow.commit()
        return RefundResult(outcome, payment)
