-- Payments: one per reservation. The card is kept as brand and last four digits only: the
-- number and CVC never reach this database.
CREATE TABLE payments (
    id              uuid        PRIMARY KEY,
    reservation_id  uuid        NOT NULL,
    customer_id     text        NOT NULL,
    customer_email  text        NOT NULL DEFAULT '',
    amount_minor    bigint      NOT NULL CHECK (amount_minor >= 0),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    card_last4      text        NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    card_brand      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('APPROVED', 'DECLINED', 'REFUNDED')),
    decline_reason  text,
    refunded_at     timestamptz,
    version         integer     NOT NULL CHECK (version >= 1),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_one_per_reservation UNIQUE (reservation_id),
    CONSTRAINT payments_refunded_has_time CHECK ((state = 'REFUNDED') = (refunded_at IS NOT NULL)),
    CONSTRAINT payments_declined_has_reason CHECK ((state = 'DECLINED') = (decline_reason IS NOT NULL))
);

-- Transactional outbox (copied from services.kit.events.outbox.SCHEMA, so this file never changes).
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

-- Inbox of handled events (copied from services.kit.events.inbox.SCHEMA).
CREATE TABLE IF NOT EXISTS inbox (
    consumer    text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
