"""The pending window derived from the payment outage it rides out (settings and booking agree)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.reservation.service_layer import booking
from services.reservation.settings import PAYMENT_GRACE_S, ReservationSettings


def test_the_default_window_rides_out_a_30_s_outage() -> None:
    settings = ReservationSettings()

    assert settings.payment_outage_window_s == 30.0
    s = settings
    last_send_s = s.pending_window_s - s.payment_work_limit_s - s.payment_deadline_s - PAYMENT_GRACE_S
    # The last authorization is sent after the outage has ended and the task had time to ask again ...
    recovery_s = booking.payment_recovery_s(settings.payment_deadline_s, PAYMENT_GRACE_S)
    assert last_send_s == pytest.approx(30.0 + recovery_s)
    # ... and the seats of an unpaid reservation are held no longer than this.
    assert settings.pending_window_s == pytest.approx(38.6)


def test_a_pending_window_set_alone_decides_the_outage_it_rides_out() -> None:
    settings = ReservationSettings(pending_window_s=20.0)

    assert settings.pending_window_s == 20.0
    assert settings.payment_outage_window_s == pytest.approx(20.0 - 8.6)


def test_the_outage_window_set_alone_derives_the_pending_window() -> None:
    settings = ReservationSettings(payment_outage_window_s=12.0, payment_work_limit_s=3.0)

    assert settings.pending_window_s == pytest.approx(12.0 + 2.3 + 3.0 + 1.3)


def test_a_pending_window_too_short_for_the_outage_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="too short"):
        ReservationSettings(payment_outage_window_s=30.0, pending_window_s=30.0)


def test_the_two_derivations_are_inverse() -> None:
    bounds = {"payment_deadline_s": 0.8, "payment_grace_s": 0.5, "payment_work_limit_s": 5.0}
    window_s = booking.pending_window_for(30.0, **bounds)
    assert booking.outage_window_within(window_s, **bounds) == pytest.approx(30.0)
