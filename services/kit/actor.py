"""Who caused a state change: a customer, a theater manager, or the system with its cause.

A domain value every context shares (booking, payment, catalog, notification), so it lives in
the kit. Pure: the wire form (cinema.common.v1.Actor) is services.kit.events.attribution's job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SYSTEM_ID = "system"


class ActorKind(enum.StrEnum):
    CUSTOMER = "CUSTOMER"  # someone acting on what is theirs (their own reservation)
    MANAGER = "MANAGER"  # a theater manager acting on someone else's reservation, or on the catalog
    SYSTEM = "SYSTEM"  # a rule of the system; `cause` says which


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str  # the person's id (token subject), or SYSTEM_ID
    cause: str = ""  # for the system: a code such as SCREENING_CANCELLED; empty for a person

    @classmethod
    def customer(cls, customer_id: str) -> Actor:
        return cls(ActorKind.CUSTOMER, customer_id)

    @classmethod
    def manager(cls, manager_id: str) -> Actor:
        return cls(ActorKind.MANAGER, manager_id)

    @classmethod
    def system(cls, cause: str) -> Actor:
        return cls(ActorKind.SYSTEM, SYSTEM_ID, cause)

    @property
    def is_person(self) -> bool:
        return self.kind is not ActorKind.SYSTEM
