"""A managed server process dies with the process that started it (no orphans after a crashed
test run or supervisor), and starting one from a process full of gRPC threads is safe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest

from scripts.stack.process import ManagedProcess

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_the_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from scripts.stack.process import ManagedProcess
        p = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"],
                           Path({str(tmp_path / "sleeper.log")!r}), lambda: True)
        p.start()
        print(p.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the server outlived the process that started it"


def test_starting_from_a_process_with_grpc_threads(tmp_path: Path) -> None:
    # the situation of a test process: grpc's poller threads are running while we fork
    channels = [grpc.insecure_channel(f"127.0.0.1:{1 + n}") for n in range(4)]
    try:
        for n in range(20):
            p = ManagedProcess(
                f"echo{n}", [sys.executable, "-c", "print('up')"], tmp_path / f"echo{n}.log", lambda: True
            )
            p.start()
            assert p.popen is not None
            assert p.popen.wait(timeout=60) == 0, p.log_tail()
            p.stop()
    finally:
        for channel in channels:
            channel.close()
