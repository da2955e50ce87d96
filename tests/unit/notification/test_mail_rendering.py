"""The mail's bytes, written out directly, read back as the email package reads any mail."""

from __future__ import annotations

import email
import email.policy

from services.notification.adapters.smtp import build_message, render_message
from services.notification.service_layer.ports import OutgoingMail

SENDER = "Cinema <no-reply@cinema.local>"


def _read(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_the_fast_form_reads_back_like_the_email_packages_own() -> None:
    mail = OutgoingMail(
        message_id="<e-1@cinema.test>",
        recipient="amelie@example.test",
        subject="Your seats for Amélie — Le Fabuleux Destin are confirmed",
        body="Hello,\n\nyour seats D5, D6 for Amélie are confirmed.\nTotal: 23.00 €\n",
    )
    fast, slow = _read(render_message(mail, SENDER)), _read(build_message(mail, SENDER).as_bytes())
    for header in ("From", "To", "Subject", "Message-ID", "Auto-Submitted"):
        assert str(fast[header]) == str(slow[header]), header
    assert fast.get_content() == slow.get_content() == mail.body
    assert fast.get_content_type() == "text/plain" and fast.get_content_charset() == "utf-8"
    assert fast["Date"] is not None


def test_a_line_break_in_a_title_cannot_start_a_header_of_its_own() -> None:
    mail = OutgoingMail("<e-2@cinema.test>", "a@example.test", "Evil\r\nBcc: victim@example.test", "body\n")
    message = _read(render_message(mail, SENDER))
    assert message["Bcc"] is None
    assert str(message["Subject"]) == "Evil Bcc: victim@example.test"


def test_a_body_smtp_lines_cannot_carry_goes_through_the_email_package() -> None:
    mail = OutgoingMail("<e-3@cinema.test>", "a@example.test", "Long", "x" * 2000 + "\n")
    data = render_message(mail, SENDER)
    assert all(len(line) <= 998 for line in data.split(b"\n"))
    assert _read(data).get_content() == mail.body
