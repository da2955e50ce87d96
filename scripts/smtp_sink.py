"""A local SMTP sink for `make up`: accepts every mail and keeps it as a .eml file to read.

    python -m scripts.smtp_sink [--host 127.0.0.1] [--port 12525] [--dir .data/mail]
                                [--reject-recipient REGEX]

Each received mail is written (atomically: a temporary file, then a rename) to
`DIR/<UTC time>-<sequence>.eml`, with `X-Sink-Envelope-From` / `X-Sink-Envelope-To` headers
in front of the message as received, and one line is logged per mail (Message-ID, recipients,
subject, file). `--reject-recipient` refuses matching recipients with 550, to try out how a
sender handles an address that bounces. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import itertools
import logging
import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("smtp_sink")

DEFAULT_PORT = 12525


class MailFolder:
    """The aiosmtpd handler: refuse what `reject` matches, store the rest."""

    def __init__(self, folder: Path, reject: re.Pattern[str] | None = None) -> None:
        self.folder = folder
        self.reject = reject
        self._sequence = itertools.count(1)

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.reject is not None and self.reject.search(address):
            return f"550 5.1.1 <{address}>: recipient rejected by the sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        head = (
            f"X-Sink-Envelope-From: {envelope.mail_from}\r\nX-Sink-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{os.getpid()}-{next(self._sequence):06d}.eml"
        path = self.folder / name
        await asyncio.to_thread(_write_atomically, path, head + content)
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(content)
        log.info(
            "mail %s to %s: %r -> %s",
            headers.get("Message-ID", "(no Message-ID)"),
            ", ".join(envelope.rcpt_tos),
            str(headers.get("Subject", "")),
            path,
        )
        return "250 Message accepted for delivery"


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".part")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.rename(path)


async def serve(host: str, port: int, folder: Path, reject: str | None) -> None:
    handler = MailFolder(folder, re.compile(reject) if reject else None)
    loop = asyncio.get_running_loop()

    def protocol() -> Any:
        return SMTP(handler, hostname="cinema-smtp-sink", data_size_limit=10 * 1024 * 1024)

    server = await loop.create_server(protocol, host=host, port=port, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("SMTP sink listening on %s:%d, storing mail in %s", host, port, folder)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        log.info("SMTP sink stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.smtp_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", type=Path, default=Path(".data/mail"), help="where the .eml files go")
    parser.add_argument("--reject-recipient", default=None, help="refuse recipients matching this regex (550)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.dir, args.reject_recipient))


if __name__ == "__main__":
    main()
