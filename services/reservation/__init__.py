"""Reservation service (booking core): seat reservations and their life cycle."""
