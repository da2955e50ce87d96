"""Connecting a service to NATS, and making sure the streams exist, without ever giving up.

Booking, catalog, payments, reviews and the board must keep serving while NATS is down:
their events wait in the outbox and the consumers catch up later. So the event side starts
in the background and never fails for want of NATS: the client reconnects forever, the first
connection included (nats-py's `max_reconnect_attempts=-1`), and the streams are ensured
again every second until JetStream answers (it may still be starting, or restarting).
Every service connects the same way through here, so a change of policy is made once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from services.kit.events import jetstream
from services.kit.events.naming import CONTEXTS

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2  # per attempt: a dead address fails fast and the next attempt follows
RECONNECT_WAIT_S = 1
ENSURE_STREAMS_RETRY_S = 1.0


async def connect_forever(
    url: str,
    name: str,
    *,
    client: Client | None = None,
    closing: Callable[[], bool] | None = None,
    logger: logging.Logger | None = None,
) -> Client:
    """Connect to `url` as `name`, trying until it succeeds; the client reconnects forever after.

    `client`: a fresh client to connect, for a caller that keeps a handle on it before the
    connection is up (to close it on shutdown while it is still trying). `closing`: when it
    returns true, the disconnection is expected and not logged. `logger`: where the connection
    news goes (the caller's, so each service's logs keep their name).
    """
    nc = client if client is not None else Client()
    out = logger or log

    async def on_error(error: Exception) -> None:
        out.warning("nats: %s", error)

    async def on_disconnected() -> None:
        if closing is None or not closing():
            out.warning("nats disconnected; reconnecting")

    async def on_reconnected() -> None:
        out.info("nats reconnected")

    await nc.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,  # forever, the first connection included
        reconnect_time_wait=RECONNECT_WAIT_S,
        connect_timeout=CONNECT_TIMEOUT_S,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return nc


async def ensure_streams_forever(
    js: JetStreamContext,
    contexts: tuple[str, ...] = CONTEXTS,
    *,
    logger: logging.Logger | None = None,
) -> None:
    """`jetstream.ensure_streams`, retried every second until JetStream accepts it."""
    out = logger or log
    while True:
        try:
            await jetstream.ensure_streams(js, contexts)
            return
        except Exception as error:  # JetStream not ready yet (e.g. NATS restarting): try again
            out.warning("cannot ensure the streams yet (%s); retrying", error)
            await asyncio.sleep(ENSURE_STREAMS_RETRY_S)
