"""Booking use cases and the ports (repositories, unit of work, payment gateway) they run on."""
