"""Payment service: authorize and refund reservations through a simulated card processor."""
