"""What every booking use case is given: the ports and the few numbers that tune them.

Built once by the composition root (bootstrap.py) and passed to each use case, so that no
use case builds its own dependencies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from services.kit.aio import PrioritySlots
from services.reservation.service_layer.in_progress import PaymentsInProgress
from services.reservation.service_layer.manager_view import ScreeningReservationsView
from services.reservation.service_layer.ports import Clock, PaymentGateway, UnitOfWorkFactory


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class BookingDependencies:
    uow: UnitOfWorkFactory
    payments: PaymentGateway
    clock: Clock
    new_id: Callable[[], str] = field(default=new_uuid)
    # gRPC timeout of one call to payment (an attempt; a slow one is tried again, see below).
    payment_deadline_s: float = 2.0
    # The most CreateReservation spends asking payment (attempts and the pauses between them)
    # before it answers UNAVAILABLE; the caller's own deadline may leave less.
    payment_wait_s: float = 1.5
    # Pause between two attempts when payment gave no retry hint (doubled each time, up to 1 s).
    payment_retry_pause_s: float = 0.1
    # A PENDING reservation whose payment has no outcome this long after the seats were
    # claimed is failed (PAYMENT_NOT_COMPLETED) and its seats are released.
    pending_window_s: float = 15.0
    # How long payment may still be working on an authorization after it was sent (payment's
    # PAYMENT_AUTHORIZATION_LIMIT_S). No authorization is sent later than pending_window_s
    # minus this after the claim, so none can still be approved when the window ends.
    payment_work_limit_s: float = 5.0
    # Our own guard on top of the gateway's deadline, so that an adapter that fails to
    # honour it still cannot make the caller hang.
    payment_grace_s: float = 0.5
    # Taken off the caller's remaining deadline so that UNAVAILABLE reaches it in time.
    answer_margin_s: float = 0.2
    # Hint in UNAVAILABLE: about one reconciler round, after which a retry with the same
    # request_id finds the reservation settled (or settles it).
    retry_after_s: float = 2.0
    default_page_size: int = 50
    # The authorizations running in the background (one registry per process).
    payments_in_progress: PaymentsInProgress = field(default_factory=PaymentsInProgress)
    # Calls to AuthorizePayment in flight at once from this process, the oldest reservation's first.
    payment_slots: PrioritySlots = field(default_factory=lambda: PrioritySlots(16))
    max_page_size: int = 100
    # The manager's view (read-only queries); None where a test does not need it.
    screening_reservations: ScreeningReservationsView | None = None
