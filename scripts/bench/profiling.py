"""Sampling profiles of the service processes under load (py-spy), summarised per process.

py-spy attaches to a running process by pid (no restart, no code change), samples its Python
stacks without pausing it (`--nonblocking`) and keeps only the samples of the thread holding the
GIL (`--gil`: an event loop waiting in epoll, or a thread blocked, holds none), so a process's
sample count over rate x seconds is the share of the time it held the GIL (its CPU share on a
machine with cores to spare; more than that on an oversubscribed one). The
summary per process: that busy share, the functions with the most samples on top of the stack
(self time), and self time by package (asyncpg, grpc, protobuf, joserfc, logging, the service's
own code...), which is what names the cost of a hop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    process: str
    samples: int
    rate_hz: int
    seconds: float
    self_functions: list[tuple[str, int]] = field(default_factory=list)
    self_packages: list[tuple[str, int]] = field(default_factory=list)
    error: str = ""

    @property
    def busy_share(self) -> float:
        """Share of the wall time some thread held the GIL. Above the CPU share when the machine is
        oversubscribed: a thread descheduled while holding the GIL still holds it."""
        expected = self.rate_hz * self.seconds
        return self.samples / expected if expected else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "process": self.process,
            "samples": self.samples,
            "rate_hz": self.rate_hz,
            "seconds": self.seconds,
            "busy_share": self.busy_share,
            "self_functions": self.self_functions,
            "self_packages": self.self_packages,
            "error": self.error,
        }


def package_of(path: str) -> str:
    """A short owner for a source file: the site-packages package, `services.<name>`, or `stdlib:<module>`."""
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return top.removesuffix(".py")
    if "/services/" in path:
        parts = path.split("/services/", 1)[1].split("/")
        return "services." + ".".join(parts[:2]).removesuffix(".py")
    if "/gen/python/" in path:
        return "generated protobuf"
    match = re.search(r"/lib/python3\.\d+/([^/]+)", path)
    if match:
        return "stdlib:" + match.group(1).removesuffix(".py")
    return path.rsplit("/", 1)[-1]


def summarize_raw(text: str, process: str, rate_hz: int, seconds: float, top: int = 12) -> Profile:
    """Summarise py-spy's raw (collapsed stack) output: `frame;frame;... count` per line."""
    functions: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        leaf = stack.rsplit(";", 1)[-1]
        match = FRAME.match(leaf)
        func, path = (match.group("func"), match.group("file")) if match else (leaf, "")
        # The loop's own frame on top: the thread runs C code called by the event loop (uvloop,
        # grpc's core, asyncpg's protocol) with the GIL held and no Python frame above it.
        package = "event loop C code" if func == "Runner.run" else package_of(path)
        functions[f"{func} [{package}]"] += count
        packages[package] += count
    return Profile(process, total, rate_hz, seconds, functions.most_common(top), packages.most_common(top))


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


async def profile_processes(
    pids: Mapping[str, int], seconds: float, out_dir: Path, rate_hz: int = 100
) -> dict[str, Profile]:
    """Record every process at once for `seconds`; raw stacks kept in out_dir/<name>.pyspy.txt."""
    binary = py_spy()
    if binary is None:
        return {name: Profile(name, 0, rate_hz, seconds, error="py-spy is not installed") for name in pids}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)

    async def one(name: str, pid: int) -> Profile:
        raw = out_dir / f"{name}.pyspy.txt"
        argv = [binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate_hz)]
        argv += ["--nonblocking", "--gil", "--function", "--full-filenames", "--format", "raw", "--output", str(raw)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(seconds + 30):
                output, _ = await proc.communicate()
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0 or not raw.exists():
            tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return Profile(name, 0, rate_hz, seconds, error=f"py-spy exited {proc.returncode}: {tail[0]}")
        return summarize_raw(raw.read_text(errors="replace"), name, rate_hz, seconds)

    profiles = await asyncio.gather(*(one(n, p) for n, p in pids.items()))
    return {p.process: p for p in profiles}
