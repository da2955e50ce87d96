"""One managed server process: start it, wait until it is ready, stop it gracefully.

Used by the supervisor (`make up`) and by the test fixtures alike, so the two start the
stores the same way. Every child gets PR_SET_PDEATHSIG, so a crashed parent (a killed test
run, a killed supervisor) does not leave servers behind on the machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def renice(pid: int, value: int) -> None:
    """Set the nice value of every thread of a process (on Linux nice is per thread: a new thread
    inherits its creator's, and setpriority(PRIO_PROCESS, pid) reaches the main thread only)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PROCESS, tid, value)


class ProcessFailed(RuntimeError):
    """A server exited or did not become ready; the message carries the end of its log."""


@dataclass
class ManagedProcess:
    """A long-running server started from `argv`, logging to `log_path`.

    `ready` is a cheap probe (a TCP connect, a health endpoint) that says whether the server
    answers; `user` runs it as another system user (PostgreSQL refuses to run as root).

    `boot_nice`: the server boots at this nice value and returns to nice 0 the first time `ready`
    says it answers. On two shared cores a Python service's start-up (imports, connections) would
    otherwise take CPU from the instances that serve while it boots (a restarted instance beside
    its twin; in a cluster a new pod has CPU of its own). Returning to 0 needs CAP_SYS_NICE (root):
    without it the server keeps running at `boot_nice`, as every other one booted so.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    boot_nice: int = 0
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _stop_requested: bool = False
    _booting: bool = False

    def __post_init__(self) -> None:
        if self.boot_nice:
            probe = self.ready

            def ready() -> bool:
                answers = probe()
                if answers and self._booting:
                    self._booting = False
                    self._renice(0)
                return answers

            self.ready = ready

    def _renice(self, value: int) -> None:
        if self.popen is not None:
            renice(self.popen.pid, value)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **self.env}
        kwargs: dict[str, object] = {}
        if self.user and os.geteuid() == 0:
            kwargs.update(user=self.user, group=self.user, extra_groups=[])
        argv = list(self.argv)
        setpriv = shutil.which("setpriv")
        if setpriv:
            # util-linux sets the parent-death signal and execs the server: no Python code runs
            # between fork and exec (a preexec_fn forces a plain fork, and in a process with
            # gRPC threads the child sometimes died before exec: "epoll_wait error: Bad file
            # descriptor", exit -6)
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        else:
            kwargs["preexec_fn"] = _die_with_parent
        self.popen = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.cwd) if self.cwd else None,
            **kwargs,
        )
        if self.boot_nice:
            self._booting = True
            self._renice(self.boot_nice)
        if setpriv:
            self._wait_until_armed(setpriv)

    def _wait_until_armed(self, setpriv: str, timeout: float = 5.0) -> None:
        """Return once setpriv has exec'd the server: only then is the parent-death signal set. A
        parent killed before that would leave an orphan (setpriv does not re-check its parent)."""
        assert self.popen is not None
        cmdline = Path(f"/proc/{self.popen.pid}/cmdline")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            try:
                if not cmdline.read_bytes().startswith(setpriv.encode() + b"\0"):
                    return
            except OSError:  # gone already: poll() tells
                pass
            time.sleep(0.001)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise ProcessFailed(
                    f"{self.name} exited with code {self.popen.returncode} before it was ready:\n{self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except Exception:  # noqa: S110 - a probe that raises simply means "not yet"
                pass
            time.sleep(0.1)
        raise ProcessFailed(f"{self.name} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def request_stop(self) -> None:
        """Send the graceful stop signal once, without waiting (stop several in parallel)."""
        if self.popen is not None and self.popen.poll() is None and not self._stop_requested:
            self.popen.send_signal(self.stop_signal)
            self._stop_requested = True

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (or the server's own graceful signal), then SIGKILL after `timeout`."""
        code: int | None = None
        if self.popen is not None:
            if self.popen.poll() is None:
                try:
                    self.request_stop()
                    code = self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    code = self.popen.wait(timeout=timeout)
            else:
                code = self.popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self._stop_requested = False
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would (chaos tests)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
