"""The invariants of DESIGN.md, read from the stores themselves (never through the APIs under
test) once the system is quiet again.

- no seat held twice, and no claim outside a standing reservation;
- a CONFIRMED reservation has exactly one payment, APPROVED; an APPROVED payment has a CONFIRMED
  reservation; a payment of a reservation that ended is REFUNDED (or was never approved);
- every event committed to an outbox was published (no row left with published_at NULL);
- each event a customer is told about has exactly one notification, SENT (or PARKED with its
  reason), and the SMTP sink holds exactly one mail per sent notification (Message-ID is
  derived from the event id, so a resent copy shows up as a duplicate Message-ID);
- the board (Redis) agrees with the stores (free seats = seat map - blocked - claims) and
  equals a fresh rebuild (`python -m services.viewpage rebuild` into a new generation);
- no event stuck outside the dead-letter stream: every JetStream consumer has num_pending 0
  and num_ack_pending 0.

`quiet()` tells whether the asynchronous parts have settled; `check()` returns the results.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import os
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc.aio

from cinema.viewpage.v1 import board_pb2, board_pb2_grpc
from scripts.bench.catalog import whole_board
from scripts.chaos.stack import REPO, ChaosStack

NOTIFIED_EVENTS = ("reservation.confirmed", "reservation.cancelled", "payment.refunded")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    problems: list[str] = field(default_factory=list)


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _consumers(stack: ChaosStack) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{stack.nats_monitor}/jsz?consumers=true", timeout=5) as reply:  # noqa: S310
        data = json.loads(reply.read())
    found = []
    for account in data.get("account_details", []):
        for stream in account.get("stream_detail", []):
            for consumer in stream.get("consumer_detail", []) or []:
                found.append({"stream": stream["name"], **consumer})
    return found


def _streams(stack: ChaosStack) -> dict[str, int]:
    with urllib.request.urlopen(f"{stack.nats_monitor}/jsz?streams=true", timeout=5) as reply:  # noqa: S310
        data = json.loads(reply.read())
    return {
        s["name"]: int(s.get("state", {}).get("messages", 0))
        for a in data.get("account_details", [])
        for s in a.get("stream_detail", [])
    }


async def quiet(stack: ChaosStack) -> list[str]:
    """What is still moving (empty when the system has settled)."""
    moving: list[str] = []
    for db in ("reservation", "payment"):
        n = (await _fetch(stack.database_url(db), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL"))[0]
        if n["n"]:
            moving.append(f"{db} outbox: {n['n']} unpublished")
    pending = await _fetch(
        stack.database_url("reservation"), "SELECT count(*) AS n FROM reservations WHERE state='PENDING'"
    )
    if pending[0]["n"]:
        moving.append(f"{pending[0]['n']} reservations PENDING")
    unsent = await _fetch(
        stack.database_url("notification"),
        "SELECT count(*) AS n FROM notifications WHERE state IN ('PENDING','RETRYING')",
    )
    if unsent[0]["n"]:
        moving.append(f"{unsent[0]['n']} notifications not sent yet")
    for c in await asyncio.to_thread(_consumers, stack):
        if c.get("num_pending") or c.get("num_ack_pending"):
            moving.append(
                f"consumer {c['name']} on {c['stream']}: "
                f"pending {c.get('num_pending')}, ack pending {c.get('num_ack_pending')}"
            )
    return moving


async def wait_quiet(stack: ChaosStack, limit_s: float) -> tuple[float, list[str], list[str]]:
    """Seconds until quiet, what still moves at the end (empty: quiet), what moved at the first look."""
    started = time.monotonic()
    moving: list[str] = ["not checked"]
    first: list[str] | None = None
    while time.monotonic() - started < limit_s:
        try:
            moving = await quiet(stack)
        except Exception as error:  # a store that is still coming back
            moving = [f"{type(error).__name__}: {error}"]
        if first is None:
            first = moving
        if not moving:
            return time.monotonic() - started, [], first
        await asyncio.sleep(0.5)
    return time.monotonic() - started, moving, first or []


async def booking(stack: ChaosStack) -> list[Check]:
    rdb, pdb = stack.database_url("reservation"), stack.database_url("payment")
    reservations = await _fetch(rdb, "SELECT id::text, state, seats, screening_id, payment_id FROM reservations")
    claims = await _fetch(rdb, "SELECT screening_id, seat, reservation_id::text FROM seat_claims")
    payments = await _fetch(pdb, "SELECT id::text, reservation_id::text, state FROM payments")
    by_id = {r["id"]: r for r in reservations}

    seats: list[str] = []
    holders: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in reservations:
        if r["state"] in ("PENDING", "CONFIRMED"):
            for seat in r["seats"]:
                holders[(r["screening_id"], seat)].append(r["id"])
    seats += [f"seat {s} of {sid} held by {ids}" for (sid, s), ids in holders.items() if len(ids) > 1]
    seats += [
        f"seat {s} of {sid} claimed {n} times"
        for (sid, s), n in Counter((c["screening_id"], c["seat"]) for c in claims).items()
        if n > 1
    ]
    for c in claims:
        owner = by_id.get(c["reservation_id"])
        if owner is None or owner["state"] not in ("PENDING", "CONFIRMED"):
            seats.append(f"claim {c['screening_id']}/{c['seat']} by {c['reservation_id']} ({owner and owner['state']})")
    claimed = defaultdict(set)
    for c in claims:
        claimed[c["reservation_id"]].add(c["seat"])
    for r in reservations:
        if r["state"] in ("PENDING", "CONFIRMED") and claimed.get(r["id"], set()) != set(r["seats"]):
            held = sorted(claimed.get(r["id"], set()))
            seats.append(f"reservation {r['id']} ({r['state']}) claims {held} of {list(r['seats'])}")

    money: list[str] = []
    payments_of: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for p in payments:
        payments_of[p["reservation_id"]].append(p)
    for r in reservations:
        mine = payments_of.get(r["id"], [])
        approved = [p for p in mine if p["state"] == "APPROVED"]
        if r["state"] == "CONFIRMED" and (len(approved) != 1 or len(mine) != 1):
            money.append(f"CONFIRMED reservation {r['id']} has payments {[(p['id'], p['state']) for p in mine]}")
        if r["state"] == "PENDING":
            money.append(f"reservation {r['id']} still PENDING after quiescence")
    for p in payments:
        r = by_id.get(p["reservation_id"])
        if p["state"] == "APPROVED" and (r is None or r["state"] != "CONFIRMED"):
            money.append(f"APPROVED payment {p['id']} for reservation {p['reservation_id']} that is {r and r['state']}")
        if p["state"] == "REFUNDED" and r is not None and r["state"] == "CONFIRMED":
            money.append(f"REFUNDED payment {p['id']} of a CONFIRMED reservation {r['id']}")
    states = Counter(r["state"] for r in reservations)
    pstates = Counter(p["state"] for p in payments)
    return [
        Check("no seat held twice", not seats, f"{len(claims)} claims, {len(reservations)} reservations", seats),
        Check(
            "confirmed = one approved payment; approved = standing or refunded",
            not money,
            f"reservations {dict(states)}; payments {dict(pstates)}",
            money,
        ),
    ]


async def outboxes(stack: ChaosStack) -> Check:
    problems = []
    for db in ("reservation", "payment"):
        rows = await _fetch(stack.database_url(db), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        if rows[0]["n"]:
            problems.append(f"{db}: {rows[0]['n']} outbox events never published")
    return Check("every committed event published (outbox)", not problems, "", problems)


def _mail_ids(stack: ChaosStack) -> Counter[str]:
    ids: Counter[str] = Counter()
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    for path in stack.mail_dir.glob("*.eml"):
        with path.open("rb") as f:
            ids[str(parser.parse(f).get("Message-ID", "")).strip()] += 1
    return ids


async def notifications(stack: ChaosStack, notification_killed: bool) -> list[Check]:
    rows = await _fetch(
        stack.database_url("notification"), "SELECT event_id::text, event_type, state, last_error FROM notifications"
    )
    events: list[asyncpg.Record] = []
    for db in ("reservation", "payment"):
        events += await _fetch(stack.database_url(db), "SELECT event_id::text, event_type FROM outbox")
    wanted = {e["event_id"] for e in events if any(e["event_type"].endswith(t) for t in NOTIFIED_EVENTS)}
    by_event = Counter(r["event_id"] for r in rows)
    db_problems = [f"event {e} has {n} notifications" for e, n in by_event.items() if n > 1]
    missing = wanted - set(by_event)
    if missing:
        db_problems.append(
            f"{len(missing)} events customers must hear of have no notification, e.g. {sorted(missing)[:3]}"
        )
    db_problems += [
        f"notification of {r['event_id']} is {r['state']} ({r['last_error']!r})"
        for r in rows
        if r["state"] not in ("SENT", "PARKED") or (r["state"] == "PARKED" and not r["last_error"])
    ]
    mails = await asyncio.to_thread(_mail_ids, stack)
    sent = {r["event_id"] for r in rows if r["state"] == "SENT"}
    mailed = {mid.strip("<>").split("@", 1)[0]: n for mid, n in mails.items()}
    mail_problems = [f"sent notification of {e} has no mail in the sink" for e in sorted(sent - set(mailed))][:10]
    duplicates = {e: n for e, n in mailed.items() if n > 1}
    detail = f"{len(rows)} notifications ({dict(Counter(r['state'] for r in rows))}), {sum(mails.values())} mails"
    checks = [Check("one notification per event (notification DB)", not db_problems, detail, db_problems[:20])]
    if duplicates and notification_killed:
        # A crash between SMTP DATA and recording SENT leaves the mail "in doubt": it is sent again
        # with the same Message-ID (at-least-once towards SMTP; a receiver that deduplicates by
        # Message-ID shows it once). Reported, not hidden.
        detail += f"; {len(duplicates)} resent with the same Message-ID after the kill (in doubt)"
        checks.append(Check("one mail per sent notification (SMTP sink)", not mail_problems, detail, mail_problems))
    else:
        mail_problems += [f"event {e} mailed {n} times" for e, n in duplicates.items()][:10]
        checks.append(Check("one mail per sent notification (SMTP sink)", not mail_problems, detail, mail_problems))
    return checks


def _board_snapshot(movies: Sequence[board_pb2.BoardMovie]) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for m in movies:
        snap[m.movie_id] = (
            m.title,
            m.review_count,
            round(m.average_rating, 6),
            tuple(sorted((s.screening_id, s.hall, s.free_seats, s.total_seats) for s in m.screenings)),
        )
    return snap


async def board(stack: ChaosStack) -> list[Check]:
    async with grpc.aio.insecure_channel(stack.ingress) as channel:
        stub = board_pb2_grpc.BoardServiceStub(channel)
        before = _board_snapshot(await whole_board(stub, timeout_s=30))
    screenings = await _fetch(
        stack.database_url("reservation"),
        "SELECT id, seat_rows, seats_per_row, cardinality(blocked_seats) AS blocked FROM screenings",
    )
    claims = Counter(
        r["screening_id"]
        for r in await _fetch(stack.database_url("reservation"), "SELECT screening_id FROM seat_claims")
    )
    shown = {sid: free for _, _, _, shows in before.values() for sid, _, free, _ in shows}
    store_problems = []
    for s in screenings:
        if s["id"] not in shown:
            continue
        expected = s["seat_rows"] * s["seats_per_row"] - s["blocked"] - claims.get(s["id"], 0)
        if shown[s["id"]] != expected:
            store_problems.append(f"screening {s['id']}: board shows {shown[s['id']]} free, the stores say {expected}")

    env = {**os.environ, **_viewpage_env(stack)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.viewpage", "rebuild", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    rebuild_problems: list[str] = []
    if proc.returncode != 0:
        rebuild_problems.append(f"rebuild exited {proc.returncode}: {err.decode()[-500:]}")
    async with grpc.aio.insecure_channel(stack.ingress) as channel:
        stub = board_pb2_grpc.BoardServiceStub(channel)
        after = _board_snapshot(await whole_board(stub, timeout_s=30))
    if not rebuild_problems and after != before:
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                rebuild_problems.append(f"movie {key}: live {before.get(key)} vs rebuilt {after.get(key)}")
    return [
        Check(
            "board free seats = seat map - claims", not store_problems, f"{len(shown)} screenings", store_problems[:10]
        ),
        Check("board = fresh rebuild", not rebuild_problems, out.decode().strip()[-200:], rebuild_problems[:10]),
    ]


def _viewpage_env(stack: ChaosStack) -> dict[str, str]:
    """What `python -m services.viewpage rebuild` reads: the stack's Redis and NATS."""
    return {"VIEWPAGE_REDIS_URL": stack.urls["redis"], "VIEWPAGE_NATS_URL": stack.urls["nats"]}


async def jetstream(stack: ChaosStack, dead_letters_before: int) -> Check:
    consumers = await asyncio.to_thread(_consumers, stack)
    stuck = [
        f"{c['name']} on {c['stream']}: pending {c.get('num_pending')}, ack pending {c.get('num_ack_pending')}"
        for c in consumers
        if c.get("num_pending") or c.get("num_ack_pending")
    ]
    dead = (await asyncio.to_thread(_streams, stack)).get("CINEMA_DEAD_LETTER", 0)
    detail = (
        f"{len(consumers)} consumers; dead-letter stream: {dead} ({dead - dead_letters_before:+d} in this scenario)"
    )
    return Check("no event stuck outside the dead-letter stream", not stuck, detail, stuck)


async def dead_letters(stack: ChaosStack) -> int:
    return (await asyncio.to_thread(_streams, stack)).get("CINEMA_DEAD_LETTER", 0)


async def check(stack: ChaosStack, *, dead_letters_before: int, notification_killed: bool) -> list[Check]:
    results: list[Check] = []
    for name, probe in (
        ("booking", booking(stack)),
        ("outbox", outboxes(stack)),
        ("notifications", notifications(stack, notification_killed)),
        ("jetstream", jetstream(stack, dead_letters_before)),
        ("board", board(stack)),
    ):
        try:
            found = await probe
        except Exception as error:
            results.append(Check(name, False, f"the check itself failed: {type(error).__name__}: {error}"))
            continue
        results += found if isinstance(found, list) else [found]
    return results
