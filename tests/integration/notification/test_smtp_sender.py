"""The SMTP sender against the real sink: kept-open connections, and a dropped one replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scripts.stack.process import free_port
from services.notification.adapters.smtp import SmtpSender, SmtpSettings
from services.notification.service_layer.ports import OutgoingMail
from tests.integration.notification.helpers import SmtpSink

pytestmark = pytest.mark.integration


class CountingProxy:
    """A TCP relay in front of the sink that counts the connections it is asked for."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def drop_all(self) -> None:
        """Cut every relayed connection, as a server that timed out its idle sessions would."""
        for writer in self._links:
            writer.close()
        self._links.clear()

    async def stop(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(free_port(), tmp_path / "mail")
    await sink.start()
    yield sink
    await sink.stop()


async def _handover() -> bool:
    return True


def _mail(n: int) -> OutgoingMail:
    return OutgoingMail(f"<m-{n}@cinema.test>", f"customer-{n}@example.test", f"Mail {n}", f"Hello {n}\n")


async def test_mails_share_kept_open_connections_and_a_dropped_one_is_replaced(sink: SmtpSink) -> None:
    proxy = CountingProxy(sink.port)
    await proxy.start()
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=proxy.port, sender="Cinema <no-reply@cinema.test>"))
    try:
        for n in range(10):
            await sender.send(_mail(n), _handover)
        assert proxy.connections == 1, "each mail opened its own SMTP session"
        await asyncio.gather(*(sender.send(_mail(n), _handover) for n in range(10, 20)))
        assert proxy.connections <= 10

        proxy.drop_all()
        await asyncio.sleep(0.2)
        await sender.send(_mail(20), _handover)  # on a fresh connection, without an error
    finally:
        await sender.close()
        await proxy.stop()

    async def delivered() -> set[str]:
        return {str(m["Subject"]) for m in sink.mails()}

    for _ in range(50):
        if len(await delivered()) == 21:
            break
        await asyncio.sleep(0.1)
    assert await delivered() == {f"Mail {n}" for n in range(21)}
