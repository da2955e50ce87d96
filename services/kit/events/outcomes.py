"""What a consumed event's handler may raise to say how it ended, beside returning (applied) or
raising anything else (retried with backoff, then dead-lettered): pure, so the service layer
raises it without importing the consumer's NATS machinery (services.kit.events.consumer)."""

from __future__ import annotations


class Unappliable(Exception):
    """Raised by a handler for an event it can never apply: no retry, no dead letter (see
    services.kit.events.consumer)."""


__all__ = ["Unappliable"]
