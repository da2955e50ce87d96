"""The wire form of services.kit.actor.Actor: cinema.common.v1.Actor, both ways.

An event written before events carried attribution has no actor (or kind UNSPECIFIED): it
reads as None, and each consumer says what it does then.
"""

from __future__ import annotations

from cinema.common.v1 import actor_pb2
from services.kit.actor import Actor, ActorKind

_TO_WIRE = {
    ActorKind.CUSTOMER: actor_pb2.ACTOR_KIND_CUSTOMER,
    ActorKind.MANAGER: actor_pb2.ACTOR_KIND_MANAGER,
    ActorKind.SYSTEM: actor_pb2.ACTOR_KIND_SYSTEM,
}
_FROM_WIRE = {wire: kind for kind, wire in _TO_WIRE.items()}


def actor_message(actor: Actor) -> actor_pb2.Actor:
    return actor_pb2.Actor(kind=_TO_WIRE[actor.kind], id=actor.id, cause=actor.cause)


def actor_of(message: actor_pb2.Actor) -> Actor | None:
    """The actor of a received event; None when it was not recorded (an older event)."""
    kind = _FROM_WIRE.get(message.kind)
    if kind is None:  # UNSPECIFIED, or a kind added after this code was written
        return None
    return Actor(kind, message.id, message.cause)
