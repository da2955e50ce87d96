"""The board's change feed: viewpage PUBLISHes `{"movie_id", "screening_id"}` on a Redis channel
after each applied event (services/viewpage/adapters/redis_store.py, `RedisChangeFeed`); we
SUBSCRIBE and hand each change to the fan-out.

Pub/Sub keeps nothing for a subscriber that is away, so after any outage (ours or Redis') every
page is told to RESYNC. Messages are checked before they reach a browser: two short id strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.web.service_layer.fanout import RESYNC, BoardChange, ChangeFanout

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{0,64}$")
MAX_BACKOFF_S = 5.0


def parse_change(raw: bytes | str) -> BoardChange | None:
    """The change a message announces, or None for anything that is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    movie_id, screening_id = data.get("movie_id", ""), data.get("screening_id", "")
    if not isinstance(movie_id, str) or not isinstance(screening_id, str):
        return None
    if not (_ID.match(movie_id) and _ID.match(screening_id)) or not (movie_id or screening_id):
        return None
    return BoardChange(movie_id, screening_id)


class RedisChangeSource:
    """Subscribes to the channel until stopped, reconnecting with backoff."""

    def __init__(self, redis_url: str, channel: str, fanout: ChangeFanout) -> None:
        self._url = redis_url
        self.channel = channel
        self._fanout = fanout
        self.connected = asyncio.Event()
        self.received = 0
        self.rejected = 0

    async def run(self) -> None:
        backoff = 0.2
        outage = False
        while True:
            client = aioredis.from_url(self._url, health_check_interval=10, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected.set()
                backoff = 0.2
                if outage:
                    log.info("board changes followed again", extra={"channel": self.channel})
                    self._fanout.publish(RESYNC)  # what was announced meanwhile is lost
                    outage = False
                else:
                    log.info("following board changes", extra={"channel": self.channel})
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self._relay(message["data"])
            except (RedisError, OSError) as exc:
                if not outage:
                    log.warning("board changes not followed (Redis): %s", exc, extra={"channel": self.channel})
                outage = True
                self.connected.clear()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    def _relay(self, data: bytes | str) -> None:
        change = parse_change(data)
        if change is None:
            self.rejected += 1
            log.warning("ignored a malformed board change", extra={"channel": self.channel})
            return
        self.received += 1
        self._fanout.publish(change)
