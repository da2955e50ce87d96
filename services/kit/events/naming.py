"""Where an event goes: its type, its subject and its context's stream.

Derived from the event's protobuf full name, so a new event needs no registration:
`cinema.reservation.v1.ReservationConfirmed` has the type of that full name, travels on the
subject `cinema.reservation.confirmed` (the context's own prefix is dropped from the event
name: `ReservationConfirmed` in context `reservation` is `confirmed`, `ScreeningScheduled`
in context `movie` is `screening_scheduled`) and is kept in the stream `CINEMA_RESERVATION`,
one stream per context holding `cinema.reservation.>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FULL_NAME = re.compile(r"^cinema\.(?P<context>[a-z]+)\.v(?P<version>\d+)\.(?P<name>[A-Z][A-Za-z0-9]*)$")


@dataclass(frozen=True)
class EventName:
    context: str  # the bounded context that owns the event, e.g. "reservation"
    name: str  # the message name, e.g. "ReservationConfirmed"
    full_name: str  # the protobuf full name, used as the CloudEvents `type`

    @property
    def subject(self) -> str:
        return f"cinema.{self.context}.{event_token(self.context, self.name)}"

    @property
    def stream(self) -> str:
        return stream_for(self.context)


def parse_full_name(full_name: str) -> EventName:
    m = _FULL_NAME.match(full_name)
    if m is None:
        raise ValueError(f"{full_name!r} is not an event of a cinema context (cinema.<context>.v<N>.<Name>)")
    return EventName(m["context"], m["name"], full_name)


def event_token(context: str, name: str) -> str:
    """`ReservationConfirmed` in `reservation` -> `confirmed`;
    `ScreeningScheduled` in `movie` -> `screening_scheduled`."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    prefix = context + "_"
    return snake[len(prefix) :] if snake.startswith(prefix) else snake


def stream_for(context: str) -> str:
    return f"CINEMA_{context.upper()}"


def stream_subjects(context: str) -> list[str]:
    return [f"cinema.{context}.>"]


# The contexts that publish events, each with its own stream.
CONTEXTS = ("movie", "reservation", "payment", "review", "notification")
DEAD_LETTER_STREAM = "CINEMA_DEAD_LETTER"
DEAD_LETTER_SUBJECTS = ["cinema.deadletter.>"]
