"""The SMTP sender (aiosmtplib): kept-open connections, each mail's dialogue split around DATA.

The SMTP dialogue is driven step by step (connect, EHLO, MAIL, RCPT, then DATA) so that the
delivery log can record the handover right before DATA: everything that fails before DATA
certainly delivered nothing (NotDelivered, retried); a reply code to DATA is definite too; but
a broken or timed-out connection during DATA leaves the outcome unknown (DeliveryInDoubt).
Every message carries a Message-ID derived from its event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.notification.service_layer.ports import (
    ClaimLost,
    DeliveryInDoubt,
    MailSender,
    NotDelivered,
    OutgoingMail,
)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str  # the From header and the envelope sender
    timeout_s: float = 10.0
    start_tls: bool = False
    username: str = ""
    password: str = ""


def build_message(mail: OutgoingMail, sender: str) -> EmailMessage:
    """The message as the email package builds it (used when the fast form below cannot hold it)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Message-ID"] = mail.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message.set_content(mail.body)
    return message


def _header_value(value: str) -> str:
    # No header injection: a CR or LF in a title or address must not start a header of its own.
    value = " ".join(value.splitlines())
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()  # RFC 2047 encoded-words


def render_message(mail: OutgoingMail, sender: str) -> bytes:
    """The message's bytes, written out directly: a plain-text UTF-8 mail with the same headers
    as `build_message`. The email package's header registry cost 5 ms of CPU per mail (py-spy:
    stdlib email 24-28 % of the notification service); this is a few microseconds. A body that
    plain 8-bit lines cannot carry (a line over SMTP's 998 octets) goes through `build_message`."""
    body = mail.body if mail.body.endswith("\n") else mail.body + "\n"
    encoded = body.encode("utf-8")
    if any(len(line) > 998 for line in encoded.split(b"\n")):
        return build_message(mail, sender).as_bytes()
    headers = (
        ("From", _header_value(sender)),
        ("To", _header_value(mail.recipient)),
        ("Subject", _header_value(mail.subject)),
        ("Message-ID", _header_value(mail.message_id)),
        ("Date", formatdate(localtime=False, usegmt=True)),
        ("Auto-Submitted", "auto-generated"),  # RFC 3834: no vacation replies, please
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
    )
    head = "".join(f"{name}: {value}\n" for name, value in headers)
    return head.encode("ascii") + b"\n" + encoded


def _envelope_address(sender: str) -> str:
    """`Cinema <no-reply@cinema.local>` -> `no-reply@cinema.local`."""
    if "<" in sender and sender.endswith(">"):
        return sender[sender.index("<") + 1 : -1]
    return sender


class SmtpSender(MailSender):
    """Sends over a few kept-open connections: a new SMTP session per mail (connect, EHLO, QUIT)
    cost both sides more than the mail itself. A connection goes back to the pool only after a
    mail went through whole; any failure closes it. One that sat idle longer than `idle_s` is
    closed instead of reused, and a reused one that the server has dropped meanwhile is replaced
    once before MAIL (nothing was sent on it, so that retry cannot deliver twice)."""

    def __init__(self, settings: SmtpSettings, *, pool_size: int = 16, idle_s: float = 20.0) -> None:
        self._s = settings
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []
        self._pool_size = pool_size
        self._idle_s = idle_s

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._s
        client = aiosmtplib.SMTP(hostname=s.host, port=s.port, timeout=s.timeout_s, start_tls=s.start_tls)
        await client.connect()
        if s.username:
            await client.login(s.username, s.password)
        return client

    def _take(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            since, client = self._idle.pop()
            if now - since <= self._idle_s and client.is_connected:
                return client
            _close(client)
        return None

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self._pool_size and client.is_connected:
            self._idle.append((time.monotonic(), client))
        else:
            _close(client)

    async def _open_envelope(self, mail: OutgoingMail) -> aiosmtplib.SMTP:
        """A connection on which MAIL and RCPT for `mail` were accepted."""
        client = self._take()
        if client is not None:
            try:
                await client.mail(_envelope_address(self._s.sender))
            except (aiosmtplib.SMTPServerDisconnected, OSError, TimeoutError):
                _close(client)  # dropped while idle: start afresh
                client = None
            except BaseException:
                _close(client)
                raise
        if client is None:
            client = await self._connect()
            try:
                await client.mail(_envelope_address(self._s.sender))
            except BaseException:
                _close(client)
                raise
        try:
            await client.rcpt(mail.recipient)
        except BaseException:
            _close(client)
            raise
        return client

    async def send(self, mail: OutgoingMail, before_handover: Callable[[], Awaitable[bool]]) -> None:
        data = render_message(mail, self._s.sender)
        try:
            client = await self._open_envelope(mail)
        except aiosmtplib.SMTPResponseException as refused:
            raise NotDelivered(f"SMTP {refused.code}: {refused.message}", permanent=refused.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise NotDelivered(f"mail server unreachable: {error!r}") from None
        delivered = False
        try:
            if not await before_handover():
                raise ClaimLost(mail.message_id)
            try:
                await client.data(data)
            except aiosmtplib.SMTPResponseException as refused:
                # A reply code is an answer: the server did not take the message.
                raise NotDelivered(f"SMTP {refused.code}: {refused.message}", permanent=refused.code >= 500) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                raise DeliveryInDoubt(f"connection lost during DATA: {error!r}") from None
            delivered = True
        finally:
            if delivered:
                self._give_back(client)
            else:
                _close(client)

    async def close(self) -> None:
        """Say goodbye on the kept connections (at shutdown)."""
        idle, self._idle = self._idle, []
        for _since, client in idle:
            if client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.quit(), 1.0)
            _close(client)


def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        client.close()
