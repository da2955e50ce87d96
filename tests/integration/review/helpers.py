"""Helpers shared by the review tests (integration and contract): settings, requests, reading
the review events back from JetStream, recording the queries a MongoDB client sends."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message
from nats.js.client import JetStreamContext
from pymongo import monitoring

from cinema.events.v1.envelope_pb2 import EventEnvelope
from cinema.review.v1 import review_pb2 as pb
from services.kit.events import envelope as env
from services.kit.testing_tokens import LocalTokenIssuer
from services.review.bootstrap import ReviewApp
from services.review.settings import ReviewSettings

T = TypeVar("T")
Metadata = tuple[tuple[str, str]]


def review_settings(
    mongo_url: str, database: str, nats_url: str, issuer: LocalTokenIssuer, jwks: Path, **extra: Any
) -> ReviewSettings:
    return ReviewSettings(
        mongo_url=mongo_url,
        mongo_database=database,
        nats_url=nats_url,
        grpc_port=0,
        metrics_enabled=False,
        jwks_source=str(jwks),
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        relay_poll_interval_s=0.2,
        drain_s=0,
        shutdown_grace_s=0.5,
        **extra,
    )


def create_request(movie_id: str, rating: int = 4, text: str = "", request_id: str = "") -> pb.CreateReviewRequest:
    return pb.CreateReviewRequest(movie_id=movie_id, review=pb.Review(rating=rating, text=text), request_id=request_id)


class Tokens:
    """Call metadata for customers, managers and others, signed by the test issuer."""

    def __init__(self, issuer: LocalTokenIssuer) -> None:
        self.issuer = issuer

    def customer(self, subject: str, name: str = "") -> Metadata:
        claims = {"name": name} if name else None
        return self.issuer.metadata(self.issuer.mint(subject, roles={"customer"}, extra_claims=claims))

    def manager(self, subject: str = "manager-1") -> Metadata:
        return self.issuer.metadata(self.issuer.mint(subject, roles={"manager"}))

    def with_roles(self, subject: str, *roles: str) -> Metadata:
        return self.issuer.metadata(self.issuer.mint(subject, roles=set(roles)))


async def review_events(
    js: JetStreamContext, review_ids: set[str], expected: int, within_s: float = 15.0, settle_s: float = 0.5
) -> list[tuple[str, EventEnvelope, Message]]:
    """Every event on `cinema.review.>` about `review_ids`, in stream order, as (NATS subject,
    envelope, event): read from the start of the stream until `expected` were found and then
    nothing more came for `settle_s` (so that a duplicate would show), or `within_s` passed."""
    sub = await js.subscribe("cinema.review.>", ordered_consumer=True)
    found: list[tuple[str, EventEnvelope, Message]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    try:
        while loop.time() < deadline:
            try:
                msg = await sub.next_msg(timeout=settle_s)
            except TimeoutError:
                if len(found) >= expected:
                    break
                continue
            try:
                envelope = env.decode(msg.data)
            except env.UndecodableEvent:
                continue  # another test's poison message on the shared stream
            if envelope.aggregate_id in review_ids:
                found.append((msg.subject, envelope, env.unwrap(envelope)))
    finally:
        await sub.unsubscribe()
    return found


class QueryRecorder(monitoring.CommandListener):
    """Records the filter of every command a MongoDB client sends to one collection."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self._lock = threading.Lock()
        self.filters: list[tuple[str, Mapping[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        name = event.command_name
        if command.get(name) != self.collection:
            return
        found: list[Mapping[str, Any]] = []
        if name in ("find", "count", "distinct", "aggregate") and "filter" in command:
            found.append(command["filter"])
        elif name == "update":
            found += [u["q"] for u in command.get("updates", ())]
        elif name == "delete":
            found += [d["q"] for d in command.get("deletes", ())]
        elif name == "findAndModify":
            found.append(command.get("query", {}))
        with self._lock:
            self.filters += [(name, f) for f in found]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def snapshot(self) -> list[tuple[str, Mapping[str, Any]]]:
        with self._lock:
            return list(self.filters)


def filter_fields(query: Mapping[str, Any]) -> Iterator[str]:
    """The document fields a filter constrains, through `$or` / `$and` / `$nor`."""
    for key, value in query.items():
        if key in ("$or", "$and", "$nor"):
            for branch in value:
                yield from filter_fields(branch)
        elif not key.startswith("$"):
            yield key


async def open_movie(app: ReviewApp) -> str:
    """A new movie review's replica of the catalog knows (its own adapter, as the events would)."""
    movie_id = str(uuid.uuid4())
    await app.deps.catalog.record_registered(movie_id)
    return movie_id
