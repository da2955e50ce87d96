-- Who cancelled a reservation: `cancelled_by` held only an id (a customer's or a manager's
-- token subject, or 'system'); now the kind of actor and, for the system, its cause are kept
-- too (services.kit.actor.Actor), so that ReservationCancelled can say who cancelled.
ALTER TABLE reservations
    ADD COLUMN cancelled_by_kind text CHECK (cancelled_by_kind IN ('CUSTOMER', 'MANAGER', 'SYSTEM')),
    ADD COLUMN cancel_cause text NOT NULL DEFAULT '';

-- Rows cancelled before: 'system' cancelled them only for a cancelled screening; an id equal to
-- the reservation's customer is the customer; any other id was a manager's.
UPDATE reservations SET
    cancelled_by_kind = CASE
        WHEN cancelled_by = 'system' THEN 'SYSTEM'
        WHEN cancelled_by = customer_id THEN 'CUSTOMER'
        ELSE 'MANAGER'
    END,
    cancel_cause = CASE WHEN cancelled_by = 'system' THEN 'SCREENING_CANCELLED' ELSE '' END
WHERE cancelled_by IS NOT NULL;
