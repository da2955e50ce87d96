-- The simulated card processor's record of the answers it gave, by reference (the reservation
-- id, the processor's idempotency key). A real processor keeps this on its side, one record for
-- every payment instance that asks it; the simulation keeps it here so that two payment
-- instances asking at once about one reservation are charged once, as a real processor would
-- charge them. No card data: the answer only.
CREATE TABLE simulated_processor_answers (
    reference       text        PRIMARY KEY,
    approved        boolean     NOT NULL,
    decline_reason  text,
    answered_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT simulated_processor_declined_has_reason CHECK (approved = (decline_reason IS NULL))
);
