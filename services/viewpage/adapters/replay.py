"""The event history from NATS JetStream: every stream the board follows, from its first message.

Each stream is read with an *ordered ephemeral* consumer (no durable state on the server, gaps
detected and the consumer recreated by the client), up to the stream's last sequence as read
when the replay of that stream starts; later events reach the new generation through the live
consumers, which write to it from the moment it is opened. Undecodable messages are skipped
here (the live consumer parked them in the dead-letter stream already).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext

from services.kit.events import envelope as env
from services.kit.events.naming import stream_for
from services.viewpage.adapters.events import CONTEXTS, meta_of, to_domain
from services.viewpage.domain.events import BoardEvent, EventMeta

log = logging.getLogger(__name__)


class JetStreamHistory:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        contexts: Sequence[str] = CONTEXTS,
        batch: int = 200,
        idle_timeout_s: float = 10.0,
    ) -> None:
        self._js = js
        self._contexts = tuple(contexts)
        self._batch = batch
        self._idle_timeout_s = idle_timeout_s
        self.skipped = 0

    async def replay(self) -> AsyncIterator[Sequence[tuple[BoardEvent, EventMeta]]]:
        for context in self._contexts:
            async for batch in self._replay_stream(context):
                yield batch

    async def _replay_stream(self, context: str) -> AsyncIterator[Sequence[tuple[BoardEvent, EventMeta]]]:
        stream = stream_for(context)
        info = await self._js.stream_info(stream)
        last = info.state.last_seq
        if info.state.messages == 0 or last == 0:
            return
        sub = await self._js.subscribe(
            f"cinema.{context}.>", stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        batch: list[tuple[BoardEvent, EventMeta]] = []
        try:
            while True:
                # A gap (a message deleted by the limits) never arrives: the timeout ends a stuck replay.
                msg = await sub.next_msg(timeout=self._idle_timeout_s)
                sequence = msg.metadata.sequence.stream
                try:
                    envelope = env.decode(msg.data)
                    event = to_domain(env.unwrap(envelope))
                except env.UndecodableEvent as exc:
                    self.skipped += 1
                    log.warning("replay skips message %d of %s: %s", sequence, stream, exc)
                    event = None
                if event is not None:
                    batch.append((event, meta_of(envelope)))
                if len(batch) >= self._batch:
                    yield batch
                    batch = []
                if sequence >= last:
                    break
            if batch:
                yield batch
        finally:
            await sub.unsubscribe()
