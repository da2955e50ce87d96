-- The delivery log: one row per event id (the unique key that makes a message go out once).
-- state: PENDING (recorded) -> SENT, or RETRYING (next_attempt_at) ... -> PARKED (last_error).
-- A replica claims a due row with a lease (claim_token, claimed_until); handover_at is set
-- right before SMTP DATA, so a lease that ran out with handover_at set means "in doubt".
CREATE TABLE notifications (
    id               uuid        PRIMARY KEY,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    message_kind     text        NOT NULL,
    customer_id      text        NOT NULL,
    recipient        text        NOT NULL,
    subject          text        NOT NULL,
    body             text        NOT NULL,
    reservation_id   text        NOT NULL,
    movie_title      text        NOT NULL DEFAULT '',
    starts_at        timestamptz,
    hall             text        NOT NULL DEFAULT '',
    seats            text[]      NOT NULL DEFAULT '{}',
    state            text        NOT NULL CHECK (state IN ('PENDING', 'RETRYING', 'SENT', 'PARKED')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text        NOT NULL DEFAULT '',
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claim_token      uuid,
    claimed_until    timestamptz,
    handover_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CONSTRAINT notifications_one_per_event UNIQUE (event_id),
    CONSTRAINT notifications_sent_has_time CHECK ((state = 'SENT') = (sent_at IS NOT NULL))
);

-- The delivery loop's scan: due rows that are not finished.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state IN ('PENDING', 'RETRYING');
-- ListNotifications: a customer's, newest first (keyset pagination).
CREATE INDEX notifications_by_customer ON notifications (customer_id, created_at DESC, id DESC);
-- A refund notice borrows movie, time and seats from an earlier message of the reservation.
CREATE INDEX notifications_by_reservation ON notifications (reservation_id, created_at DESC);
