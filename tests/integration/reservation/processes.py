"""Services as separate processes configured by environment, as `make up` and the system tests
(kill -9, many customers) run them: `python -m services.<name>` with `<NAME>_*` variables.

    async with ServiceProcess.start("payment", {"PAYMENT_GRPC_PORT": "50999", ...}) as payment:
        ...  # payment.port, payment.lines (its JSON log)
        payment.kill()  # or: await payment.terminate() for a graceful SIGTERM stop
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO = Path(__file__).resolve().parents[3]


class ServiceProcess:
    """One service process; its stderr JSON log is collected line by line."""

    def __init__(self, name: str, env: Mapping[str, str], args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.env = dict(os.environ) | {"PYTHONPATH": str(REPO)} | dict(env)
        self.args = args
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def run(cls, name: str, env: Mapping[str, str], args: tuple[str, ...] = (), timeout_s: float = 60) -> int:
        """Run a one-shot command (e.g. `migrate`) to completion; returns its exit code."""
        process = cls(name, env, args)
        await process.spawn()
        assert process.process is not None
        try:
            return await asyncio.wait_for(process.process.wait(), timeout_s)
        finally:
            await process.close()

    @classmethod
    async def start(cls, name: str, env: Mapping[str, str], timeout_s: float = 60) -> ServiceProcess:
        """Start the service and wait for its `service started` log line."""
        process = cls(name, env)
        await process.spawn()
        try:
            await asyncio.wait_for(process.started.wait(), timeout_s)
        except BaseException:
            process.kill()
            await process.close()
            raise AssertionError(f"{name} did not start: {process.lines[-20:]}") from None
        return process

    async def spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{self.name}", *self.args, cwd=REPO, env=self.env,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"message": raw.decode(errors="replace").rstrip()}
            self.lines.append(line)
            if line.get("message") == "service started":
                self.started.set()

    @property
    def port(self) -> int:
        return int(next(line["port"] for line in self.lines if line.get("message") == "service started"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self) -> list[str]:
        return [str(line.get("message")) for line in self.lines]

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, then the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def close(self) -> None:
        """Make sure the process is gone (killed if it still runs) and the log reader done."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 5)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
