"""The SMTP sender (aiosmtplib): one connection per message, split around DATA.

The SMTP dialogue is driven step by step (connect, EHLO, MAIL, RCPT, then DATA) so that the
delivery log can record the handover right before DATA: everything that fails before DATA
certainly delivered nothing (NotDelivered, retried); a reply code to DATA is definite too; but
a broken or timed-out connection during DATA leaves the outcome unknown (DeliveryInDoubt).
Every message carries a Message-ID derived from its event id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Message-ID"] = mail.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message.set_content(mail.body)
    return message


def _envelope_address(sender: str) -> str:
    """`Cinema <no-reply@cinema.local>` -> `no-reply@cinema.local`."""
    if "<" in sender and sender.endswith(">"):
        return sender[sender.index("<") + 1 : -1]
    return sender


class SmtpSender(MailSender):
    def __init__(self, settings: SmtpSettings) -> None:
        self._s = settings

    async def send(self, mail: OutgoingMail, before_handover: Callable[[], Awaitable[bool]]) -> None:
        s = self._s
        client = aiosmtplib.SMTP(hostname=s.host, port=s.port, timeout=s.timeout_s, start_tls=s.start_tls)
        data = build_message(mail, s.sender).as_bytes()
        try:
            try:
                await client.connect()
                if s.username:
                    await client.login(s.username, s.password)
                await client.mail(_envelope_address(s.sender))
                await client.rcpt(mail.recipient)
            except aiosmtplib.SMTPResponseException as refused:
                raise NotDelivered(f"SMTP {refused.code}: {refused.message}", permanent=refused.code >= 500) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                raise NotDelivered(f"mail server unreachable: {error!r}") from None
            if not await before_handover():
                raise ClaimLost(mail.message_id)
            try:
                await client.data(data)
            except aiosmtplib.SMTPResponseException as refused:
                # A reply code is an answer: the server did not take the message.
                raise NotDelivered(f"SMTP {refused.code}: {refused.message}", permanent=refused.code >= 500) from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                raise DeliveryInDoubt(f"connection lost during DATA: {error!r}") from None
        finally:
            if client.is_connected:
                with contextlib.suppress(Exception):
                    await client.quit()
            client.close()
