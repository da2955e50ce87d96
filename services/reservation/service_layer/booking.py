"""Booking use cases: create, cancel, read and list reservations, and seat availability.

`create_reservation` runs in three phases, because a call to payment must never happen
inside a database transaction (it would hold row locks for the length of a network call):

1. one transaction: idempotency lookup, validation against the replica, seat claim (the
   unique constraint decides races), reservation saved PENDING;
2. no transaction: payment.Authorize, each attempt with a deadline, asked again while payment
   is busy or out of reach;
3. a second transaction: CONFIRMED (+ ReservationConfirmed in the outbox), or FAILED with
   the seats released.

Once the seats are claimed, neither a busy machine nor a short payment outage may cost the
customer the sale. Phases 2 and 3 run in a task of their own
(services.reservation.service_layer.in_progress) that outlives the call: the caller waits for it
at most `payment_wait_s` (or its own deadline), and the authorization goes on after it has
left. Payment is idempotent per reservation and finishes an authorization it has started even
when our deadline passes, so a slow attempt is simply asked again: the repeat joins the one in
progress or reads its stored outcome, and never charges twice. A refusal before any work
(payment at its concurrency limit, with a retry hint) is asked again after the hint. A payment
that cannot be reached (down, restarting) is asked again too, with a pause doubling up to
MAX_RETRY_PAUSE_S, but the callers waiting hear at once that it is out of reach.

When payment has not answered in the caller's time, the caller gets UNAVAILABLE (retry with
the same request_id) and the reservation stays PENDING. We do not void it on the spot because
the outcome is unknown: the authorization may be approved a moment later, and voiding would
leave an approved payment for a reservation that does not stand. Whatever answer payment
gives settles it (the background task, the caller's retry, or the reconciler, which asks
payment for the outcome); the reconciler fails one for lack of a payment only after
`pending_window_s`. A retry with the same request_id returns the same reservation and, if it
is still PENDING, joins the authorization in progress (in a process that was restarted meanwhile,
starts another, idempotent, one) and gets the eventual result.

The window is derived from the payment outage it must ride out (pending_window_for): an outage
of `outage` seconds that begins at the claim ends while authorizations may still be sent (until
`outage` plus the recovery time, payment_recovery_s, after the claim), and no authorization is
sent once too little of the window is left for payment to finish it (`payment_work_limit_s`,
our deadline and grace): from then on a retry only asks payment what became of it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from services.kit.actor import ActorKind
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.reservation.domain.policy import check_reservation_request, parse_seats
from services.reservation.domain.reservation import (
    INVALID_CARD,
    PAYMENT_NOT_COMPLETED,
    Reservation,
    ReservationState,
)
from services.reservation.domain.screening import ScreeningStatus
from services.reservation.domain.values import Money, SeatLabel, SeatMap
from services.reservation.service_layer.commands import (
    CancelReservation,
    CreateReservation,
    GetReservation,
    GetSeatAvailability,
    ListReservations,
)
from services.reservation.service_layer.dependencies import BookingDependencies
from services.reservation.service_layer.in_progress import Attempts
from services.reservation.service_layer.ports import (
    DuplicateRequest,
    PaymentCard,
    PaymentResult,
    PaymentStatus,
    PaymentUnavailable,
    ReservationPage,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- create


async def create_reservation(cmd: CreateReservation, deps: BookingDependencies) -> Reservation:
    """Reserve seats and pay for them; see the module docstring for the phases.

    Returns the reservation (CONFIRMED; or CANCELLED on a replay of one cancelled since).
    Raises InvalidArgument / NotFound / FailedPrecondition (SCREENING_*, SEATS_TAKEN,
    PAYMENT_DECLINED with `decline_reason`, PAYMENT_NOT_COMPLETED, REQUEST_ID_REUSED) or
    Unavailable (payment has not answered yet: retry with the same request_id).
    """
    if not cmd.request_id:
        raise InvalidArgument.for_field("request_id", "an idempotency key is required")
    loop = asyncio.get_running_loop()
    # The caller's deadline counts from its arrival, not from the end of the claim.
    answer_by = loop.time() + deps.payment_wait_s
    if cmd.time_budget_s is not None:
        answer_by = min(answer_by, loop.time() + cmd.time_budget_s - deps.answer_margin_s)
    reservation = await _open_or_find(cmd, deps)
    if reservation.state is not ReservationState.PENDING:
        return outcome(reservation, deps)  # a replay of a settled request: the same answer again
    if _authorization_time_left(reservation, deps) <= 0:
        # Too late in the pending window to start an authorization payment might still be
        # working on when the reconciler gives up: only ask what became of the earlier ones.
        result = await _look_up(reservation, deps)
        return outcome(await settle(reservation.id, result, deps), deps)
    wait_s = answer_by - loop.time()
    if wait_s < _MIN_ATTEMPT_S:
        raise payment_unavailable(deps)  # no time left to wait for an answer: do not even ask
    # Phases 2 and 3 run in a task of their own that outlives this call: once the seats are
    # claimed, the answer of a busy payment must settle the reservation even if this caller is
    # gone (its deadline passed, or we answered UNAVAILABLE first). A retry joins the same task
    # and has it ask payment again now if it was pausing between two attempts.
    authorization, joined = deps.payments_in_progress.start(
        reservation.id, lambda attempts: _pay(reservation, cmd.card, deps, attempts)
    )
    unreachable = authorization.attempts.unreachable()
    if joined:
        authorization.attempts.wake()
    done, _ = await asyncio.wait((authorization.task, unreachable), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    if authorization.task in done:
        return outcome(authorization.task.result(), deps)
    log.info(
        "payment has not answered yet; the caller is told to retry, the authorization goes on",
        extra={"reservation_id": reservation.id, "unreachable": unreachable.done()},
    )
    raise payment_unavailable(deps)


async def _pay(
    reservation: Reservation, card: PaymentCard, deps: BookingDependencies, attempts: Attempts
) -> Reservation:
    """Phases 2 and 3: authorize (asking again while payment is busy or out of reach), then settle."""
    try:
        result = await _authorize(reservation, card, deps, attempts)
    except InvalidArgument:
        # Payment refused the card as malformed or expired: nothing was charged, so the
        # seats go back now and the caller learns which card field is wrong.
        await _fail_and_release(reservation.id, INVALID_CARD, deps)
        raise
    return await settle(reservation.id, result, deps)


# The longest pause between two attempts of a background authorization (see _authorize).
MAX_RETRY_PAUSE_S = 1.0


def payment_recovery_s(payment_deadline_s: float, payment_grace_s: float) -> float:
    """The longest an authorization task takes to ask payment again once payment is back: an
    attempt sent to the absent payment runs out its deadline (and grace), then the longest pause."""
    return payment_deadline_s + payment_grace_s + MAX_RETRY_PAUSE_S


def pending_window_for(
    outage_window_s: float, *, payment_deadline_s: float, payment_grace_s: float, payment_work_limit_s: float
) -> float:
    """The pending window that lets a reservation ride out a payment outage of `outage_window_s`.

    An outage that begins at the claim ends `outage_window_s` later; the authorization task asks
    again within the recovery time, so that is the last moment an authorization may be sent.
    Payment may work on that one up to its work limit, and our deadline and grace bound the
    call: only after all of it may the reservation be failed for lack of a payment.
    """
    last_send_s = outage_window_s + payment_recovery_s(payment_deadline_s, payment_grace_s)
    return last_send_s + payment_work_limit_s + payment_deadline_s + payment_grace_s


def outage_window_within(
    pending_window_s: float, *, payment_deadline_s: float, payment_grace_s: float, payment_work_limit_s: float
) -> float:
    """The payment outage a pending window rides out (the inverse of pending_window_for)."""
    no_outage = pending_window_for(
        0.0,
        payment_deadline_s=payment_deadline_s,
        payment_grace_s=payment_grace_s,
        payment_work_limit_s=payment_work_limit_s,
    )
    return pending_window_s - no_outage


def _authorization_time_left(reservation: Reservation, deps: BookingDependencies) -> float:
    """Seconds during which an authorization may still be sent for this PENDING reservation.

    An authorization sent later could still be in progress at payment (for up to its work
    limit, after our deadline and grace) when the reconciler fails the reservation at the end
    of the pending window, and its approval would then be left for a reservation that does not stand.
    """
    last_send = reservation.created_at + timedelta(
        seconds=deps.pending_window_s - deps.payment_work_limit_s - deps.payment_deadline_s - deps.payment_grace_s
    )
    return (last_send - deps.clock.now()).total_seconds()


async def _fail_and_release(reservation_id: str, reason: str, deps: BookingDependencies) -> Reservation:
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(reservation_id, lock=True)
        if reservation is None:
            raise NotFound("reservation", reservation_id)
        if reservation.state is ReservationState.PENDING:
            reservation.fail(reason, deps.clock.now())
            await uow.claims.release(reservation.id)
            await uow.commit()
        return reservation


async def _open_or_find(cmd: CreateReservation, deps: BookingDependencies) -> Reservation:
    """Phase 1: the caller's existing reservation for this request_id, or a new PENDING one."""
    customer_id = cmd.caller.subject
    for _attempt in range(2):
        async with deps.uow() as uow:
            existing = await uow.reservations.get_by_request(customer_id, cmd.request_id)
            if existing is not None:
                _require_same_request(existing, cmd)
                return existing
            now = deps.clock.now()
            screening = await uow.screenings.get(cmd.screening_id) if cmd.screening_id else None
            seats = check_reservation_request(cmd.screening_id, screening, cmd.seats, now)
            assert screening is not None  # check_reservation_request raised NotFound otherwise
            reservation = Reservation.open(
                reservation_id=deps.new_id(),
                customer_id=customer_id,
                screening=screening,
                seats=seats,
                request_id=cmd.request_id,
                at=now,
                customer_email=cmd.caller.email,
            )
            try:
                await uow.reservations.add(reservation)
            except DuplicateRequest:
                # A twin request with the same key won the insert; the next attempt finds it.
                continue
            await uow.claims.claim(screening.id, reservation.seats, reservation.id)
            await uow.commit()
            return reservation
    raise Unavailable("the reservation request is being processed; retry", retry_after_s=deps.retry_after_s)


def _require_same_request(existing: Reservation, cmd: CreateReservation) -> None:
    try:
        same_seats = sorted(parse_seats(cmd.seats)) == list(existing.seats)
    except InvalidArgument:
        same_seats = False
    if existing.screening_id != cmd.screening_id or not same_seats:
        raise FailedPrecondition(
            f"request_id {cmd.request_id!r} was already used for another reservation request",
            reason="REQUEST_ID_REUSED",
            metadata={"request_id": cmd.request_id, "reservation": existing.id},
        )


# An attempt with less time than this is not worth sending.
_MIN_ATTEMPT_S = 0.01


async def _authorize(
    reservation: Reservation, card: PaymentCard, deps: BookingDependencies, attempts: Attempts
) -> PaymentResult:
    """Phase 2: ask payment until it answers, each attempt with a deadline, until the last
    moment an authorization may be sent for the reservation (see _authorization_time_left).

    Every way of not answering is asked again: a deadline that passed (payment is slow, or
    stopped; the repeat joins the authorization in progress there), a refusal with a retry hint
    (payment was full and started nothing; we wait the hint, at least the pause), and a payment
    that cannot be reached (down, restarting, breaker open) — the waiting callers hear that at
    once (`attempts`) and answer UNAVAILABLE, while this goes on. The pause between attempts
    doubles from `payment_retry_pause_s` up to MAX_RETRY_PAUSE_S, and a caller joining cuts it
    short. Past the last moment it ends with UNAVAILABLE and leaves the reservation to the
    reconciler, which settles it by payment's outcome or fails it at the end of the pending window.
    """
    pause_s = deps.payment_retry_pause_s
    tries = 0
    while True:
        time_left = _authorization_time_left(reservation, deps)
        deadline_s = min(deps.payment_deadline_s, time_left)
        if deadline_s < _MIN_ATTEMPT_S:
            log.warning(
                "payment has not answered; no authorization may be sent any more, "
                "the reservation is left PENDING for the reconciler",
                extra={"reservation_id": reservation.id, "attempts": tries},
            )
            raise payment_unavailable(deps)
        tries += 1
        try:
            # A few authorizations at a time, the oldest reservation first: after an outage the
            # backlog is asked in the order its time runs out, at payment's pace, not as a storm.
            async with asyncio.timeout(time_left):
                await deps.payment_slots.acquire(reservation.created_at.timestamp())
            try:
                deadline_s = min(deps.payment_deadline_s, _authorization_time_left(reservation, deps))
                if deadline_s < _MIN_ATTEMPT_S:
                    continue  # the wait for a slot used the time up: the loop ends it
                async with asyncio.timeout(deadline_s + deps.payment_grace_s):
                    return await deps.payments.authorize(
                        reservation.id,
                        reservation.customer_id,
                        reservation.customer_email,
                        reservation.amount,
                        card,
                        deadline_s,
                    )
            finally:
                deps.payment_slots.release()
        except (PaymentUnavailable, TimeoutError) as error:
            hint = error.retry_after_s if isinstance(error, PaymentUnavailable) else None
            slow = not isinstance(error, PaymentUnavailable) or error.slow
            if not slow and hint is None:
                attempts.found_unreachable()  # the callers waiting for it answer UNAVAILABLE now
            if tries == 1:
                log.info(
                    "payment has not answered; asking again until it does",
                    extra={"reservation_id": reservation.id, "error": type(error).__name__},
                )
            wait_s = pause_s if hint is None else max(hint, pause_s)
            # Never longer than the window's bound assumes, nor past the last moment to send.
            await attempts.pause(min(wait_s, MAX_RETRY_PAUSE_S, max(0.0, time_left - deadline_s)))
            pause_s = min(pause_s * 2, MAX_RETRY_PAUSE_S)


async def _look_up(reservation: Reservation, deps: BookingDependencies) -> PaymentResult:
    """Payment's outcome for the reservation, without sending an authorization; UNAVAILABLE if none yet."""
    try:
        async with asyncio.timeout(deps.payment_deadline_s + deps.payment_grace_s):
            result = await deps.payments.find_by_reservation(reservation.id, deps.payment_deadline_s)
    except (PaymentUnavailable, TimeoutError) as error:
        raise payment_unavailable(deps) from error
    if result is None:
        # The reconciler fails it at the end of the window; the retry after that learns so.
        raise payment_unavailable(deps)
    return result


def payment_unavailable(deps: BookingDependencies) -> Unavailable:
    return Unavailable(
        "payment is unavailable; retry with the same request_id",
        retry_after_s=deps.retry_after_s,
        reason="PAYMENT_UNAVAILABLE",
    )


async def settle(reservation_id: str, result: PaymentResult, deps: BookingDependencies) -> Reservation:
    reservation, _changed = await settle_and_tell(reservation_id, result, deps)
    return reservation


async def settle_and_tell(
    reservation_id: str, result: PaymentResult, deps: BookingDependencies
) -> tuple[Reservation, bool]:
    """Phase 3 (also the reconciler's): apply payment's answer; also tell whether it changed anything.

    Under a row lock, so that create, a replay, the reconciler and a cancellation settle one
    reservation one at a time; whoever comes second finds it settled and changes nothing.
    An approval that arrives after the reservation ended (cancelled meanwhile, or failed by
    the reconciler) is voided: a refund-only ReservationCancelled tells payment to refund.
    """
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(reservation_id, lock=True)
        if reservation is None:
            raise NotFound("reservation", reservation_id)
        now = deps.clock.now()
        version_before = reservation.version
        if result.status is PaymentStatus.APPROVED:
            if reservation.state is ReservationState.PENDING:
                reservation.confirm(result.payment_id, now)
            elif not reservation.is_active:
                reservation.void_late_payment(result.payment_id, now)
        elif reservation.state is ReservationState.PENDING:
            reservation.fail(result.decline_reason or result.status.value, now)
            await uow.claims.release(reservation.id)
        await uow.commit()
        return reservation, reservation.version != version_before


def outcome(reservation: Reservation, deps: BookingDependencies) -> Reservation:
    """What create_reservation answers for a reservation in this state."""
    if reservation.state is ReservationState.FAILED:
        reason = reservation.failure_reason or ""
        if reason == INVALID_CARD:
            raise InvalidArgument.for_field("card", "payment refused the card; start again with a new request_id")
        if reason == PAYMENT_NOT_COMPLETED:
            raise FailedPrecondition(
                "payment for this reservation never completed; the seats were released. "
                "Start again with a new request_id",
                reason=PAYMENT_NOT_COMPLETED,
                metadata={"reservation": reservation.id},
            )
        raise FailedPrecondition(
            f"payment declined: {reason}",
            reason="PAYMENT_DECLINED",
            metadata={"reservation": reservation.id, "decline_reason": reason},
        )
    if reservation.state is ReservationState.PENDING:
        raise payment_unavailable(deps)
    return reservation


# ---------------------------------------------------------------------------------- cancel


async def cancel_reservation(cmd: CancelReservation, deps: BookingDependencies) -> Reservation:
    """Cancel by its owner (or a manager): CANCELLED, seats free at once, ReservationCancelled.

    The event says who cancelled, from the caller's identity: the customer when the reservation
    is theirs, a manager when it is someone else's (services.kit.actor).

    Never calls payment, so it works while payment is down: payment refunds when it
    consumes the event. Cancelling a cancelled reservation is a no-op; a FAILED one raises
    FailedPrecondition. Someone else's reservation is NotFound, not PermissionDenied, so
    that ids cannot be probed.
    """
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(cmd.reservation_id, lock=True)
        if reservation is None or not cmd.caller.may_see(reservation):
            raise NotFound("reservation", cmd.reservation_id)
        was_active = reservation.is_active
        actor = cmd.caller.acting_on(reservation)
        # Without words of their own, the reason names who cancelled (as before attribution).
        default_reason = "CANCELLED_BY_MANAGER" if actor.kind is ActorKind.MANAGER else "CANCELLED_BY_CUSTOMER"
        reservation.cancel(actor, cmd.reason or default_reason, deps.clock.now())
        if was_active:
            await uow.claims.release(reservation.id)
        await uow.commit()
        return reservation


# ---------------------------------------------------------------------------------- queries


async def get_reservation(query: GetReservation, deps: BookingDependencies) -> Reservation:
    async with deps.uow() as uow:
        reservation = await uow.reservations.get(query.reservation_id)
    if reservation is None or not query.caller.may_see(reservation):
        raise NotFound("reservation", query.reservation_id)
    return reservation


async def list_reservations(query: ListReservations, deps: BookingDependencies) -> ReservationPage:
    """The caller's own reservations, newest first, one page at a time (managers included)."""
    if query.page_size < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    page_size = min(query.page_size or deps.default_page_size, deps.max_page_size)
    async with deps.uow() as uow:
        return await uow.reservations.list_for_customer(query.caller.subject, page_size, query.page_token)


@dataclass(frozen=True)
class SeatAvailability:
    """The seats of a screening: free, taken (held by an active reservation), blocked.

    `bookable` is False once the screening is cancelled or has started: then nothing can be
    reserved, whatever `free` says.
    """

    screening_id: str
    status: ScreeningStatus
    bookable: bool
    price: Money
    seat_map: SeatMap
    free: tuple[SeatLabel, ...]
    taken: tuple[SeatLabel, ...]

    @property
    def blocked(self) -> tuple[SeatLabel, ...]:
        return tuple(sorted(self.seat_map.blocked))

    @property
    def free_count(self) -> int:
        return len(self.free)

    @property
    def total_count(self) -> int:
        """Sellable seats: rows x seats per row minus blocked."""
        return self.seat_map.capacity


async def get_seat_availability(query: GetSeatAvailability, deps: BookingDependencies) -> SeatAvailability:
    async with deps.uow() as uow:
        screening = await uow.screenings.get(query.screening_id)
        if screening is None or screening.is_tombstone:
            raise NotFound("screening", query.screening_id)  # unknown, or only a tombstone
        held = await uow.claims.held_seats(screening.id)
    seat_map = screening.seat_map
    bookable = not screening.is_cancelled and not screening.has_started(deps.clock.now())
    return SeatAvailability(
        screening_id=screening.id,
        status=screening.status,
        bookable=bookable,
        price=screening.price,
        seat_map=seat_map,
        free=tuple(seat for seat in seat_map.bookable_seats() if seat not in held),
        taken=tuple(sorted(seat for seat in held if seat_map.is_bookable(seat))),
    )
