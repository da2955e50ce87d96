"""The faults, each with its healing: what a scenario does to the running stack while the load
runs. Every injection returns notes (what happened, how long the pieces took) for the report.

How "kill -9 the outbox relay" is defined here: the relay is a task inside the reservation (and
payment) process, so it is killed by killing its process. `outbox-relay` kills reservation with
SIGKILL at the moment its outbox holds committed but unpublished events (polled from
PostgreSQL), i.e. mid-relay; the restarted relay must publish them, and NATS's Nats-Msg-Id
dedupe plus idempotent consumers must keep anything published twice from applying twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from scripts.chaos.stack import SERVICES, ChaosStack, renice

Notes = dict[str, object]
Inject = Callable[[ChaosStack], Awaitable[Notes]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Inject
    short: bool = False  # part of the short run inside `make test`
    kills_notification: bool = False
    zero_failures: bool = False  # the target: no failed request, not even a retried attempt


async def _kill9(stack: ChaosStack, name: str) -> Notes:
    pid = await asyncio.to_thread(stack.signal, name, signal.SIGKILL)
    back = await asyncio.to_thread(stack.wait_ready, name, pid)
    return {f"{name} killed (pid)": pid, f"{name} ready again after s": round(back, 2)}


async def _down_for(stack: ChaosStack, names: tuple[str, ...], sig: signal.Signals, seconds: float) -> Notes:
    notes: Notes = {}
    pids = {}
    for name in names:
        stack.hold(name)
        pids[name] = await asyncio.to_thread(stack.signal, name, sig)
    for pid in pids.values():
        await asyncio.to_thread(stack.wait_exited, pid)
    await asyncio.sleep(seconds)
    for name in names:
        stack.release(name)
    for name, pid in pids.items():
        notes[f"{name} ready again after s"] = round(await asyncio.to_thread(stack.wait_ready, name, pid), 2)
    notes["held down for s"] = seconds
    return notes


async def kill_payment(stack: ChaosStack) -> Notes:
    return await _kill9(stack, "payment")


async def kill_reservation(stack: ChaosStack) -> Notes:
    return await _kill9(stack, "reservation")


async def kill_nats(stack: ChaosStack) -> Notes:
    return await _kill9(stack, "nats")


async def kill_outbox_relay(stack: ChaosStack) -> Notes:
    """SIGKILL reservation while its outbox holds committed, unpublished events."""
    conn = await asyncpg.connect(stack.database_url("reservation"))
    try:
        started = time.monotonic()
        backlog = 0
        while time.monotonic() - started < 10:
            backlog = int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            if backlog:
                break
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    notes = await _kill9(stack, "reservation")
    return {"unpublished outbox events at the kill": backlog, **notes}


async def kill_viewpage_and_notification(stack: ChaosStack) -> Notes:
    return await _down_for(stack, ("viewpage", "notification"), signal.SIGKILL, 5.0)


async def stop_movie(stack: ChaosStack) -> Notes:
    return await _down_for(stack, ("movie",), signal.SIGTERM, 8.0)


async def restart_postgres(stack: ChaosStack) -> Notes:
    # SIGINT: PostgreSQL's fast shutdown (aborts transactions, closes every connection)
    return await _down_for(stack, ("postgres",), signal.SIGINT, 2.0)


async def slow_payment(stack: ChaosStack) -> Notes:
    """SIGSTOP payment for longer than reservation's deadline on it, then SIGCONT."""
    pid = await asyncio.to_thread(stack.signal, "payment", signal.SIGSTOP)
    try:
        await asyncio.sleep(6.0)
    finally:
        await asyncio.to_thread(stack.signal, "payment", signal.SIGCONT)
    return {"payment stopped (pid)": pid, "stopped for s": 6.0}


async def _roll(stack: ChaosStack, name: str, boot_nice: int) -> Notes:
    """Old -> spare -> new: start a spare instance on the second slot, wait until it serves and
    Envoy routes to it, SIGTERM the old one (NOT_SERVING, drain, exit), let the supervisor start
    the new one in the first slot, wait for it, then SIGTERM the spare the same way.

    A booting instance runs at nice `boot_nice` until it serves: on two shared cores, a Python
    service's start-up otherwise starves the serving instances of CPU long enough for Envoy's
    active health checks (500 ms timeout, 2 failures) to eject them (in a cluster the new pod has
    its own CPU). 0 turns this off."""
    notes: Notes = {}
    spare_port, port = stack.spares[name], stack.service_port(name)
    spare = stack.second_instance(name)
    t0 = time.monotonic()
    spare.start()
    renice(spare.pid, boot_nice)
    stack.extra[name] = spare
    await asyncio.to_thread(spare.wait_ready, 120)
    await asyncio.to_thread(stack.wait_envoy, name, spare_port, True)
    renice(spare.pid, 0)
    notes["spare serving after s"] = round(time.monotonic() - t0, 2)
    stack.hold(name)
    t1 = time.monotonic()
    old = await asyncio.to_thread(stack.signal, name, signal.SIGTERM)
    await asyncio.to_thread(stack.wait_exited, old)
    notes["old drained and exited after s"] = round(time.monotonic() - t1, 2)
    stack.release(name)
    new = await asyncio.to_thread(stack.wait_new_pid, name, old)
    renice(new, boot_nice)
    await asyncio.to_thread(stack.wait_ready, name, old)
    await asyncio.to_thread(stack.wait_envoy, name, port, True)
    renice(new, 0)
    t2 = time.monotonic()
    spare.request_stop()
    code = await asyncio.to_thread(spare.stop, 60)
    stack.extra.pop(name, None)
    notes["spare drained and exited after s"] = round(time.monotonic() - t2, 2)
    notes["spare exit code"] = code
    return notes


def rolling(names: tuple[str, ...], boot_nice: int = 19) -> Inject:
    async def inject(stack: ChaosStack) -> Notes:
        notes: Notes = {"booting instances at nice": boot_nice}
        for name in names:
            for key, value in (await _roll(stack, name, boot_nice)).items():
                notes[f"{name}: {key}"] = value
        return notes

    return inject


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "rolling-reservation",
        "rolling restart of reservation (spare slot behind Envoy, SIGTERM drains the old one)",
        rolling(("reservation",)),
        short=True,
        zero_failures=True,
    ),
    Scenario(
        "rolling-all",
        "rolling restart of every service, one after the other",
        rolling((*(s for s in SERVICES if s != "reservation"), "reservation")),
        zero_failures=True,
        kills_notification=False,
    ),
    Scenario("kill-payment", "kill -9 payment (the supervisor restarts it)", kill_payment, short=True),
    Scenario("kill-reservation", "kill -9 reservation", kill_reservation, short=True),
    Scenario("kill-outbox-relay", "kill -9 reservation while its outbox holds unpublished events", kill_outbox_relay),
    Scenario("restart-nats", "kill -9 NATS and let it restart", kill_nats, short=True),
    Scenario(
        "kill-viewpage-notification",
        "kill -9 viewpage and notification, keep them down 5 s",
        kill_viewpage_and_notification,
        kills_notification=True,
    ),
    Scenario("slow-payment", "SIGSTOP payment 6 s (past reservation's deadline), then SIGCONT", slow_payment),
    Scenario("stop-movie", "SIGTERM movie and keep it down 8 s (booking uses the replica)", stop_movie),
    Scenario("restart-postgres", "fast shutdown of PostgreSQL, down 2 s, restart", restart_postgres),
)
