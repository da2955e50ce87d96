"""The faults, each with its healing: what a scenario does to the running stack while the load
runs. Every injection returns notes (what happened, how long the pieces took) for the report.

Every service runs two instances (CINEMA_INSTANCES; movie one on FerretDB): "kill -9 payment"
kills one instance, and the other must carry the load while the supervisor brings the killed one
back. The targets (issue 21): one instance killed or stalled costs clients at most
`TROUBLE_TARGET_S` of trouble, no request fails, and nobody is told to start again; a killed
instance serves again within `RESTART_TARGET_S`; a payment outage shorter than reservation's
outage window fails no reservation.

How "kill -9 the outbox relay" is defined here: the relay is a task inside the reservation (and
payment) process, so it is killed by killing its process. `outbox-relay` kills reservation with
SIGKILL at the moment its outbox holds committed but unpublished events (polled from
PostgreSQL), i.e. mid-relay; the restarted relay must publish them, and NATS's Nats-Msg-Id
dedupe plus idempotent consumers must keep anything published twice from applying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from scripts.chaos.stack import SERVICES, ChaosStack, renice
from scripts.stack.services import grpc_serving

Notes = dict[str, object]
Inject = Callable[[ChaosStack], Awaitable[Notes]]


TROUBLE_TARGET_S = 2.0
RESTART_TARGET_S = 3.0
PAYMENT_OUTAGE_S = 20.0  # all of payment down: shorter than reservation's outage window (30 s)


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Inject
    short: bool = False  # part of the short run inside `make test`
    kills_notification: bool = False
    zero_failures: bool = False  # no request ends in an error (retried attempts are reported)
    trouble_target_s: float | None = None  # the most seconds of trouble clients may see
    nobody_starts_again: bool = False  # no customer is told PAYMENT_NOT_COMPLETED
    restart_target_s: float | None = None  # a killed instance serves again within this


def _serving(port: int) -> bool:
    try:
        return grpc_serving(port)
    except Exception:
        return False


def _wait_serving(port: int, since: float, timeout: float = 120) -> float:
    """Seconds from `since` until the instance on `port` answers SERVING (probed every 50 ms)."""
    while time.monotonic() - since < timeout:
        if _serving(port):
            return time.monotonic() - since
        time.sleep(0.05)
    raise RuntimeError(f"nothing SERVING on port {port} {timeout:.0f} s after the fault")


async def _kill9(stack: ChaosStack, component: str) -> Notes:
    """SIGKILL one instance; notes how long until it serves again and Envoy routes to it."""
    port = stack.port(component)
    pid = await asyncio.to_thread(stack.signal, component, signal.SIGKILL)
    killed_at = time.monotonic()
    serving = await asyncio.to_thread(_wait_serving, port, killed_at)
    cluster = component.split("-", 1)[0]
    await asyncio.to_thread(stack.wait_envoy, cluster, port, True)
    return {
        f"{component} killed (pid)": pid,
        f"{component} serving again after s": round(serving, 2),
        f"{component} routed to again after s": round(time.monotonic() - killed_at, 2),
        "restart s": round(serving, 2),
    }


async def _down_for(stack: ChaosStack, names: tuple[str, ...], sig: signal.Signals, seconds: float) -> Notes:
    """Take every instance of each named component (or service) down for `seconds`."""
    notes: Notes = {}
    pids = {}
    targets = [i for name in names for i in (stack.instances(name) or [name])]
    for name in targets:
        stack.hold(name)
        pids[name] = await asyncio.to_thread(stack.signal, name, sig)
    for pid in pids.values():
        await asyncio.to_thread(stack.wait_exited, pid)
    await asyncio.sleep(seconds)
    for name in targets:
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
    return await _kill9_store(stack, "nats")


async def _kill9_store(stack: ChaosStack, name: str) -> Notes:
    pid = await asyncio.to_thread(stack.signal, name, signal.SIGKILL)
    back = await asyncio.to_thread(stack.wait_ready, name, pid)
    return {f"{name} killed (pid)": pid, f"{name} ready again after s": round(back, 2)}


async def kill_outbox_relay(stack: ChaosStack) -> Notes:
    """SIGKILL the reservation instance leading the outbox relay while the outbox holds
    committed, unpublished events."""
    conn = await asyncpg.connect(stack.database_url("reservation"))
    try:
        started = time.monotonic()
        backlog = 0
        while time.monotonic() - started < 10:
            backlog = int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            if backlog:
                break
            await asyncio.sleep(0.005)
        # the relay's leader holds its advisory lock on one of its connections
        ports = await conn.fetch(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = 'reservation'"
        )
    finally:
        await conn.close()
    leader = await asyncio.to_thread(_holder_of, stack, "reservation", {int(r["client_port"]) for r in ports})
    notes = await _kill9(stack, leader)
    return {"unpublished outbox events at the kill": backlog, "relay leader": leader, **notes}


def _holder_of(stack: ChaosStack, service: str, client_ports: set[int]) -> str:
    """The instance of `service` that has a TCP connection from one of `client_ports`."""
    import psutil

    for name in stack.instances(service):
        pid = stack.pid(name)
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            if any(c.laddr and c.laddr.port in client_ports for c in psutil.Process(pid).net_connections("tcp")):
                return name
    raise RuntimeError(f"no {service} instance holds a connection from ports {sorted(client_ports)}")


async def kill_viewpage_and_notification(stack: ChaosStack) -> Notes:
    return await _down_for(stack, ("viewpage", "notification"), signal.SIGKILL, 5.0)


async def stop_movie(stack: ChaosStack) -> Notes:
    return await _down_for(stack, ("movie",), signal.SIGTERM, 8.0)


async def restart_postgres(stack: ChaosStack) -> Notes:
    # SIGINT: PostgreSQL's fast shutdown (aborts transactions, closes every connection)
    return await _down_for(stack, ("postgres",), signal.SIGINT, 2.0)


async def slow_payment(stack: ChaosStack) -> Notes:
    """SIGSTOP one payment instance for longer than reservation's deadline on it, then SIGCONT."""
    pid = await asyncio.to_thread(stack.signal, "payment", signal.SIGSTOP)
    try:
        await asyncio.sleep(6.0)
    finally:
        await asyncio.to_thread(stack.signal, "payment", signal.SIGCONT)
    return {"payment stopped (pid)": pid, "stopped for s": 6.0}


async def payment_outage(stack: ChaosStack) -> Notes:
    """SIGSTOP every payment instance for PAYMENT_OUTAGE_S (shorter than reservation's outage
    window): customers retrying with their request id must all get their reservation."""
    names = stack.instances("payment")
    pids = [await asyncio.to_thread(stack.signal, name, signal.SIGSTOP) for name in names]
    try:
        await asyncio.sleep(PAYMENT_OUTAGE_S)
    finally:
        for name in names:
            await asyncio.to_thread(stack.signal, name, signal.SIGCONT)
    return {"payment instances stopped (pids)": pids, "stopped for s": PAYMENT_OUTAGE_S}


EVERY_SERVICE_SETTLE_S = 5.0


async def kill_every_service(stack: ChaosStack) -> Notes:
    """kill -9 one instance of each service in turn, the next `EVERY_SERVICE_SETTLE_S` after the
    previous one serves again (one fault at a time, as the target is stated): how long each takes
    to restart."""
    notes: Notes = {}
    slowest = 0.0
    for i, service in enumerate(SERVICES):
        if i:
            await asyncio.sleep(EVERY_SERVICE_SETTLE_S)
        instances = stack.instances(service)
        if len(instances) < 2:
            notes[f"{service}: skipped"] = "one instance (a kill is an outage: see stop-movie)"
            continue
        killed = await _kill9(stack, instances[-1])
        restart = float(killed.pop("restart s"))  # type: ignore[arg-type]
        slowest = max(slowest, restart)
        notes.update({f"{service}: {k}": v for k, v in killed.items()})
    notes["restart s"] = round(slowest, 2)
    return notes


async def _roll(stack: ChaosStack, component: str, boot_nice: int) -> Notes:
    """SIGTERM one instance (NOT_SERVING, drain, exit) while the others serve; the supervisor
    starts it again; wait until it serves and Envoy routes to it.

    The new process runs at nice `boot_nice` until it serves: on two shared cores, a Python
    service's start-up otherwise starves the serving instances of CPU long enough for Envoy's
    active health checks (500 ms timeout, 2 failures) to eject them (in a cluster the new pod has
    its own CPU). 0 turns this off."""
    notes: Notes = {}
    port = stack.port(component)
    t0 = time.monotonic()
    old = await asyncio.to_thread(stack.signal, component, signal.SIGTERM)
    await asyncio.to_thread(stack.wait_exited, old)
    notes["drained and exited after s"] = round(time.monotonic() - t0, 2)
    new = await asyncio.to_thread(stack.wait_new_pid, component, old)
    renice(new, boot_nice)
    await asyncio.to_thread(stack.wait_ready, component, old)
    await asyncio.to_thread(stack.wait_envoy, component.split("-", 1)[0], port, True)
    renice(new, 0)
    notes["serving and routed to again after s"] = round(time.monotonic() - t0, 2)
    return notes


def rolling(names: tuple[str, ...], boot_nice: int = 19) -> Inject:
    async def inject(stack: ChaosStack) -> Notes:
        notes: Notes = {"booting instances at nice": boot_nice}
        for name in names:
            for component in stack.instances(name):
                for key, value in (await _roll(stack, component, boot_nice)).items():
                    notes[f"{component}: {key}"] = value
        return notes

    return inject


ONE_INSTANCE = {"trouble_target_s": TROUBLE_TARGET_S, "zero_failures": True, "nobody_starts_again": True}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "rolling-reservation",
        "rolling restart of reservation, one instance after the other (SIGTERM drains it)",
        rolling(("reservation",)),
        short=True,
        zero_failures=True,
    ),
    Scenario(
        "rolling-all",
        "rolling restart of every service, one instance after the other",
        rolling((*(s for s in SERVICES if s != "reservation"), "reservation")),
        zero_failures=True,
    ),
    Scenario(
        "kill-payment",
        "kill -9 one payment instance (the other serves; the supervisor restarts it)",
        kill_payment,
        short=True,
        restart_target_s=RESTART_TARGET_S,
        **ONE_INSTANCE,  # type: ignore[arg-type]
    ),
    Scenario(
        "kill-reservation",
        "kill -9 one reservation instance",
        kill_reservation,
        short=True,
        restart_target_s=RESTART_TARGET_S,
        **ONE_INSTANCE,  # type: ignore[arg-type]
    ),
    Scenario(
        "kill-outbox-relay",
        "kill -9 the reservation instance leading the outbox relay while it holds unpublished events",
        kill_outbox_relay,
        restart_target_s=RESTART_TARGET_S,
        **ONE_INSTANCE,  # type: ignore[arg-type]
    ),
    Scenario(
        "kill-every-service",
        "kill -9 one instance of each service in turn: how fast each is back",
        kill_every_service,
        restart_target_s=RESTART_TARGET_S,
        **ONE_INSTANCE,  # type: ignore[arg-type]
    ),
    Scenario("restart-nats", "kill -9 NATS and let it restart", kill_nats, short=True, zero_failures=True),
    Scenario(
        "kill-viewpage-notification",
        "kill -9 every viewpage and notification instance, keep them down 5 s",
        kill_viewpage_and_notification,
        kills_notification=True,
        zero_failures=True,
    ),
    Scenario(
        "slow-payment",
        "SIGSTOP one payment instance 6 s (past reservation's deadline), then SIGCONT",
        slow_payment,
        **ONE_INSTANCE,  # type: ignore[arg-type]
    ),
    Scenario(
        "payment-outage",
        f"SIGSTOP every payment instance {PAYMENT_OUTAGE_S:.0f} s (inside reservation's outage window)",
        payment_outage,
        zero_failures=True,
        nobody_starts_again=True,
    ),
    Scenario(
        "stop-movie",
        "SIGTERM movie and keep it down 8 s (booking uses the replica)",
        stop_movie,
        zero_failures=True,
    ),
    Scenario("restart-postgres", "fast shutdown of PostgreSQL, down 2 s, restart", restart_postgres),
)
