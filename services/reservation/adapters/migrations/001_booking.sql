-- Booking store: the catalog replica, reservations, seat claims, and the event outbox/inbox.

-- Movie titles as the catalog last described them (MovieRegistered / MovieUpdated).
CREATE TABLE movies (
    id          text    PRIMARY KEY,
    title       text    NOT NULL,
    version     bigint  NOT NULL
);

-- The replica of the catalog's screenings. A tombstone (cancelled, never seen scheduled) has
-- an empty movie_id and an empty seat map.
CREATE TABLE screenings (
    id             text        PRIMARY KEY,
    movie_id       text        NOT NULL,
    movie_title    text        NOT NULL,
    hall           text        NOT NULL,
    starts_at      timestamptz NOT NULL,
    seat_rows      integer     NOT NULL CHECK (seat_rows BETWEEN 0 AND 26),
    seats_per_row  integer     NOT NULL CHECK (seats_per_row BETWEEN 0 AND 99),
    blocked_seats  text[]      NOT NULL DEFAULT '{}',
    price_minor    bigint      NOT NULL CHECK (price_minor >= 0),
    currency       text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('SCHEDULED', 'CANCELLED')),
    version        bigint      NOT NULL
);
CREATE INDEX screenings_by_movie ON screenings (movie_id);

CREATE TABLE reservations (
    id              uuid        PRIMARY KEY,
    customer_id     text        NOT NULL,
    customer_email  text        NOT NULL DEFAULT '',
    request_id      text        NOT NULL,
    screening_id    text        NOT NULL,
    -- The screening as it was described when the reservation was made (kept for when the
    -- replica no longer describes it, e.g. a tombstone).
    movie_id        text        NOT NULL,
    movie_title     text        NOT NULL,
    hall            text        NOT NULL,
    starts_at       timestamptz NOT NULL,
    seats           text[]      NOT NULL,
    amount_minor    bigint      NOT NULL CHECK (amount_minor >= 0),
    currency        text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('PENDING', 'CONFIRMED', 'FAILED', 'CANCELLED')),
    payment_id      text,
    failure_reason  text,
    cancelled_by    text,
    cancel_reason   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz,
    version         integer     NOT NULL DEFAULT 0,
    -- The idempotency key: one reservation per (customer, request_id), however many retries.
    CONSTRAINT reservations_request_once UNIQUE (customer_id, request_id)
);
CREATE INDEX reservations_by_customer ON reservations (customer_id, created_at DESC, id DESC);
CREATE INDEX reservations_pending ON reservations (created_at) WHERE state = 'PENDING';
CREATE INDEX reservations_active_by_screening ON reservations (screening_id)
    WHERE state IN ('PENDING', 'CONFIRMED');

-- One row per seat held by an active (PENDING or CONFIRMED) reservation; rows are deleted when
-- the reservation is released. The primary key is what makes double booking impossible: two
-- transactions inserting the same (screening, seat) cannot both commit.
CREATE TABLE seat_claims (
    screening_id    text    NOT NULL,
    seat            text    NOT NULL,
    reservation_id  uuid    NOT NULL REFERENCES reservations (id),
    CONSTRAINT seat_claims_one_holder PRIMARY KEY (screening_id, seat)
);
CREATE INDEX seat_claims_by_reservation ON seat_claims (reservation_id);

-- services.kit.events.outbox.SCHEMA, copied so that this migration never changes.
CREATE TABLE IF NOT EXISTS outbox (
    position      bigserial   PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    aggregate_id  text        NOT NULL,
    envelope      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- services.kit.events.inbox.SCHEMA, copied likewise.
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
