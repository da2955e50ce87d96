"""The kit's NATS connection on real servers: it connects, it keeps trying while NATS is down
(the first connection included) and succeeds once NATS is up, and the streams get ensured."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest
from nats.js.errors import NotFoundError

from scripts.stack import stores
from scripts.stack.process import free_port
from services.kit.events import jetstream
from services.kit.events.connection import connect_forever, ensure_streams_forever
from services.kit.events.naming import DEAD_LETTER_STREAM, stream_for
from tests.support.servers import Server

pytestmark = pytest.mark.integration

LOGGER = "tests.events.connection"


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


@pytest.fixture
def late_nats() -> Iterator[Server]:
    """A NATS on a free port, not started yet: the test starts it when it wants."""
    root = stores.scratch_dir("nats-late")
    spec = stores.NatsSpec(root / "data", free_port(), free_port())
    server = Server("nats", spec.url, stores.nats_process(spec, root / "nats.log"), root, {"spec": spec})
    yield server
    server.cleanup()


async def test_connects_and_ensures_the_streams(nats_server: Server) -> None:
    nc = await connect_forever(nats_server.url, "test-connection")
    try:
        assert nc.is_connected
        js = nc.jetstream()
        await ensure_streams_forever(js)
        for config in jetstream.stream_configs():
            info = await js.stream_info(config.name or "")
            assert info.config.subjects == config.subjects
    finally:
        await nc.close()


async def test_a_client_started_while_nats_is_down_connects_once_it_is_up(
    late_nats: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    logger = logging.getLogger(LOGGER)
    connecting = asyncio.create_task(connect_forever(late_nats.url, "test-late", logger=logger))
    try:
        # Nothing listens on the port: the first connection fails, and is tried again.
        await asyncio.sleep(2.5)
        assert not connecting.done()
        failures = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
        assert len(failures) >= 2, caplog.text

        assert late_nats.process is not None
        late_nats.process.start()
        await asyncio.to_thread(late_nats.process.wait_ready, 60)
        nc = await asyncio.wait_for(connecting, timeout=15)
    finally:
        connecting.cancel()
    try:
        assert nc.is_connected
        js = nc.jetstream()
        # A fresh server has no streams: ensure_streams_forever creates the ones asked for.
        with pytest.raises(NotFoundError):
            await js.stream_info(stream_for("review"))
        await ensure_streams_forever(js, ("review",), logger=logger)
        assert (await js.stream_info(stream_for("review"))).config.subjects == ["cinema.review.>"]
        await js.stream_info(DEAD_LETTER_STREAM)
        with pytest.raises(NotFoundError):
            await js.stream_info(stream_for("movie"))
    finally:
        await nc.close()


async def test_ensure_streams_waits_for_jetstream(late_nats: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Connected, then NATS goes away: the streams are ensured once it is back."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    logger = logging.getLogger(LOGGER)
    assert late_nats.process is not None
    late_nats.process.start()
    await asyncio.to_thread(late_nats.process.wait_ready, 60)
    nc = await connect_forever(late_nats.url, "test-restart", logger=logger)
    try:
        await asyncio.to_thread(late_nats.process.stop)
        ensuring = asyncio.create_task(ensure_streams_forever(nc.jetstream(), logger=logger))
        # Each try waits for JetStream's answer (5 s) before the next one.
        await until(lambda: caplog.text.count("cannot ensure the streams yet") >= 2, timeout_s=20)
        assert not ensuring.done()
        assert "nats disconnected; reconnecting" in caplog.text

        late_nats.process.start()
        await asyncio.to_thread(late_nats.process.wait_ready, 60)
        await asyncio.wait_for(ensuring, timeout=20)
        assert "nats reconnected" in caplog.text
        for config in jetstream.stream_configs():
            await nc.jetstream().stream_info(config.name or "")
    finally:
        await nc.close()


async def test_an_expected_disconnection_is_not_logged(nats_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    closing = asyncio.Event()
    nc = await connect_forever(
        nats_server.url, "test-closing", closing=closing.is_set, logger=logging.getLogger(LOGGER)
    )
    closing.set()
    await nc.close()
    assert "disconnected" not in caplog.text
    # Without the flag, closing is reported like any other disconnection.
    nc = await connect_forever(nats_server.url, "test-not-closing", logger=logging.getLogger(LOGGER))
    await nc.close()
    assert "nats disconnected; reconnecting" in caplog.text
