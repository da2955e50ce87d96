"""Notification service: tells customers by e-mail when their reservations change state."""
