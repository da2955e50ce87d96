-- The manager's view lists a screening's reservations in every state, newest first
-- (ListScreeningReservations); reservations_active_by_screening covers only active ones.
CREATE INDEX IF NOT EXISTS reservations_by_screening ON reservations (screening_id, created_at DESC, id DESC);
