"""The sellout: a crowd of buyers races for the few seats of one screening, each like a person.

Issue 14 (item 6): while the default mix runs at 70 % of the measured capacity, 200 buyers race
for a 48-seat screening. All 48 seats must be sold within 30 s, none twice, and at most 5 % of
the buyers may ever see UNAVAILABLE (a 503). A slow payment must not cost a customer the seat.

`run_sellout` schedules the screening through the movie service (as a manager would), waits
until reservation's replica knows it, then releases every buyer at once. A buyer has looked at
the seat map before the sale opened and wants one seat:

- picks a random seat that was free when it last looked, and reserves it with a new request id;
- SEATS_TAKEN: looks at the seat map again (GetSeatAvailability) and picks another free seat;
  when none is free but not every seat is sold yet (some are still being paid for), it waits a
  couple of seconds and looks again, as people do for returns;
- UNAVAILABLE or DEADLINE_EXCEEDED: sends the same request (same request id) again after the
  server's retry hint (google.rpc.RetryInfo), or after 1 s without one;
- PAYMENT_NOT_COMPLETED: starts again with a new request id;
- stops once it holds a CONFIRMED seat, once every seat is sold, or at the time limit.

The result counts seats sold and sold twice from the answers, and (given PostgreSQL's URL) from
reservation's own tables once nothing is PENDING any more; time to sell out; buyers who saw
UNAVAILABLE; attempts per buyer; every outcome by status and reason.

`python -m scripts.bench.sellout [--use-running] [--background-rate N] [--cpu-burners N]` runs it
on its own: against `make up`'s stack, or a scratch stack on free ports that it starts and stops; with
`--background-rate`, the default benchmark mix runs at that rate during the race; with
`--cpu-burners`, that many processes spin on the cores meanwhile (a busy machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import grpc
import grpc.aio
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from cinema.common.v1.money_pb2 import Money
from cinema.common.v1.seat_pb2 import SeatMap
from cinema.movie.v1 import movie_pb2, movie_pb2_grpc
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.bench import stack as stacks
from scripts.bench.auth import Customer, Metadata, Tokens, acquire_tokens
from scripts.bench.catalog import (
    MAX_RETRY_WAIT_S,
    RETRYABLE,
    bench_description,
    call_with_retry,
    retry_hint_s,
    seed_catalog,
    wait_until_propagated,
)
from scripts.bench.openloop import OpenLoopRunner, Recorder, schedule
from scripts.bench.stack import Stack
from scripts.bench.stack import channel as open_channel
from scripts.bench.workload import APPROVED_CARD, DEFAULT_WEIGHTS, Workload
from services.kit.grpc_errors import find_detail

UNAVAILABLE_SHARE_LIMIT = 0.05  # at most this share of buyers may ever see UNAVAILABLE
LOOK_AGAIN_S = (2.0, 4.0)  # a buyer facing a full seat map looks again after this long (uniform)
PROPAGATION_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 40.0  # after the race: until reservation holds nothing PENDING for the screening


def seat_grid(seats: int) -> tuple[int, int]:
    """Rows and seats per row holding exactly `seats`, as square as it gets (48 -> 6 x 8)."""
    if seats < 1:
        raise ValueError("a screening needs at least one seat")
    rows = next(r for r in range(math.isqrt(seats), 0, -1) if seats % r == 0)
    if rows > 26:
        raise ValueError(f"{seats} seats need more than 26 rows (A-Z)")
    return rows, seats // rows


def seat_labels(rows: int, per_row: int) -> list[str]:
    return [f"{chr(65 + r)}{n}" for r in range(rows) for n in range(1, per_row + 1)]


def status_label(err: grpc.aio.AioRpcError) -> str:
    """`CODE` or `CODE/REASON` (google.rpc.ErrorInfo), e.g. FAILED_PRECONDITION/SEATS_TAKEN."""
    info = find_detail(err, error_details_pb2.ErrorInfo)
    code = err.code().name
    return f"{code}/{info.reason}" if info is not None and info.reason else code


def _error_metadata(err: grpc.aio.AioRpcError) -> Mapping[str, str]:
    info = find_detail(err, error_details_pb2.ErrorInfo)
    return dict(info.metadata) if info is not None else {}


@dataclass
class Buyer:
    """What one buyer did."""

    index: int
    customer: Customer
    attempts: int = 0  # CreateReservation calls, retries included
    purchases: int = 0  # request ids used
    looks: int = 0  # GetSeatAvailability calls
    saw_unavailable: bool = False
    saw_deadline: bool = False
    ending: str = ""
    seat: str = ""
    reservation_id: str = ""


@dataclass
class Race:
    """Shared by the buyers: the clock, the answers, the outcome counts."""

    screening_id: str
    seats: int
    all_seats: list[str]
    started: float
    ends: float
    rpc_timeout_s: float
    stub: reservation_pb2_grpc.ReservationServiceAsyncStub
    rng: random.Random
    outcomes: Counter[str] = field(default_factory=Counter)
    confirmed: dict[str, set[str]] = field(default_factory=dict)  # seat -> reservation ids answered CONFIRMED
    sold_out_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sold(self) -> int:
        return len(self.confirmed)

    def time_left(self) -> float:
        return self.ends - time.perf_counter()

    def record_sale(self, seat: str, reservation_id: str) -> None:
        self.confirmed.setdefault(seat, set()).add(reservation_id)
        if self.sold >= self.seats and self.sold_out_at is None:
            self.sold_out_at = time.perf_counter() - self.started
            self.done.set()


async def _pause(race: Race, seconds: float) -> None:
    """Sleep, but wake when the race is over (sold out)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(race.done.wait(), timeout=max(0.0, min(seconds, race.time_left())))


async def _look(race: Race, buyer: Buyer) -> list[str] | None:
    """The free seats as the buyer sees them now; None when the race is over for them."""
    request = reservation_pb2.GetSeatAvailabilityRequest(screening_id=race.screening_id)
    while race.time_left() > 0 and not race.done.is_set():
        buyer.looks += 1
        try:
            reply = await race.stub.GetSeatAvailability(
                request, metadata=buyer.customer.metadata, timeout=min(race.rpc_timeout_s, race.time_left() + 1)
            )
        except grpc.aio.AioRpcError as err:
            race.outcomes[f"look {status_label(err)}"] += 1
            if err.code() not in RETRYABLE:
                raise
            if err.code() is grpc.StatusCode.UNAVAILABLE:
                buyer.saw_unavailable = True
            await _pause(race, min(retry_hint_s(err) or 1.0, MAX_RETRY_WAIT_S))
            continue
        taken = set(reply.taken_seats)
        return [seat for seat in race.all_seats if seat not in taken]
    return None


async def _buy(race: Race, buyer: Buyer, seat: str) -> str:
    """One purchase (one request id) of `seat`: 'bought', 'taken', 'again' or how it ended."""
    buyer.purchases += 1
    request = reservation_pb2.CreateReservationRequest(
        screening_id=race.screening_id, seats=[seat], request_id=str(uuid.uuid4()), card=APPROVED_CARD
    )
    while True:
        if race.time_left() <= 0:
            return "time up"
        if race.done.is_set():
            return "sold out"  # every seat is confirmed to someone: this request cannot hold one
        buyer.attempts += 1
        try:
            reply = await race.stub.CreateReservation(
                request, metadata=buyer.customer.metadata, timeout=race.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as err:
            label = status_label(err)
            race.outcomes[label] += 1
            code = err.code()
            if label == "FAILED_PRECONDITION/SEATS_TAKEN":
                return "taken"
            if label == "FAILED_PRECONDITION/PAYMENT_NOT_COMPLETED":
                return "again"  # the seats were released: start again with a new request id
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if code is grpc.StatusCode.UNAVAILABLE:
                    buyer.saw_unavailable = True
                else:
                    buyer.saw_deadline = True
                # The same request again (same request id) after the server's hint.
                await asyncio.sleep(min(retry_hint_s(err) or 1.0, MAX_RETRY_WAIT_S, max(0.0, race.time_left())))
                continue
            return f"gave up on {label}"
        state = reservation_pb2.ReservationState.Name(reply.reservation.state)
        race.outcomes[f"OK {state}"] += 1
        if reply.reservation.state != reservation_pb2.RESERVATION_STATE_CONFIRMED:
            return f"gave up on {state}"
        buyer.seat, buyer.reservation_id = seat, reply.reservation.id
        race.record_sale(seat, reply.reservation.id)
        return "bought"


async def _buyer(race: Race, buyer: Buyer, first_view: Sequence[str], go: asyncio.Event) -> None:
    await go.wait()
    free = list(first_view)
    while True:
        if race.time_left() <= 0:
            buyer.ending = "time up"
            return
        if race.done.is_set():
            buyer.ending = "sold out"
            return
        if not free:
            # Nothing free, yet not all sold: some seats are still being paid for and may come back.
            await _pause(race, race.rng.uniform(*LOOK_AGAIN_S))
            seen = await _look(race, buyer)
            if seen is None:
                continue  # the loop's checks say why
            free = seen
            continue
        ended = await _buy(race, buyer, race.rng.choice(free))
        if ended == "bought":
            buyer.ending = "bought"
            return
        if ended in ("taken", "again"):
            seen = await _look(race, buyer)  # a person looks at the seat map again
            free = seen or []
            continue
        buyer.ending = ended
        return


async def schedule_screening(movie_address: str, manager: Metadata, seats: int, run_tag: str) -> tuple[str, list[str]]:
    """A new movie and one screening of exactly `seats` seats in a hall of this run; (id, seat labels)."""
    rows, per_row = seat_grid(seats)
    async with open_channel(movie_address) as channel:
        stub = movie_pb2_grpc.MovieServiceStub(channel)
        movie = movie_pb2.Movie(
            title=f"Premiere night ({run_tag})",
            duration_minutes=120,
            genres=["drama"],
            description=bench_description("sellout screening", run_tag),
        )
        created = await call_with_retry(
            stub.CreateMovie, movie_pb2.CreateMovieRequest(movie=movie, request_id=str(uuid.uuid4())), manager
        )
        assert isinstance(created, movie_pb2.CreateMovieResponse)
        screening = movie_pb2.Screening(
            hall=f"sellout-{run_tag}",
            seat_map=SeatMap(rows=rows, seats_per_row=per_row),
            price=Money(minor_units=1450, currency_code="EUR"),
        )
        day = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0) + timedelta(days=3)
        screening.start_time.FromDatetime(day)
        request = movie_pb2.ScheduleScreeningRequest(
            movie_id=created.movie.id, screening=screening, request_id=str(uuid.uuid4())
        )
        scheduled = await call_with_retry(stub.ScheduleScreening, request, manager)
        assert isinstance(scheduled, movie_pb2.ScheduleScreeningResponse)
    return str(scheduled.screening.id), seat_labels(rows, per_row)


async def wait_until_known(
    stub: reservation_pb2_grpc.ReservationServiceAsyncStub, screening_id: str, metadata: Metadata
) -> float:
    """Seconds until reservation's replica answers for the screening (it learns it from events)."""
    started = time.perf_counter()
    request = reservation_pb2.GetSeatAvailabilityRequest(screening_id=screening_id)
    while time.perf_counter() - started < PROPAGATION_TIMEOUT_S:
        try:
            await stub.GetSeatAvailability(request, metadata=metadata, timeout=5)
            return time.perf_counter() - started
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND and err.code() not in RETRYABLE:
                raise
        await asyncio.sleep(0.1)
    raise RuntimeError(f"reservation did not learn of screening {screening_id} within {PROPAGATION_TIMEOUT_S:.0f} s")


def reservation_database_url(postgres_url: str) -> str:
    """Reservation's database on the server `postgres_url` points at."""
    return urlparse(postgres_url)._replace(path="/reservation").geturl()


async def store_check(postgres_url: str, screening_id: str) -> dict[str, Any]:
    """Seats sold and sold twice as reservation's own tables say, once nothing is PENDING any more."""
    conn = await asyncpg.connect(reservation_database_url(postgres_url))
    try:
        waited = time.perf_counter()
        while True:
            pending = await conn.fetchval(
                "SELECT count(*) FROM reservations WHERE screening_id = $1 AND state = 'PENDING'", screening_id
            )
            if not pending or time.perf_counter() - waited > SETTLE_TIMEOUT_S:
                break
            await asyncio.sleep(0.25)
        states = {
            row["state"]: row["n"]
            for row in await conn.fetch(
                "SELECT state, count(*) AS n FROM reservations WHERE screening_id = $1 GROUP BY state", screening_id
            )
        }
        confirmed_seats = await conn.fetchval(
            "SELECT count(*) FROM reservations r, unnest(r.seats) AS s"
            " WHERE r.screening_id = $1 AND r.state = 'CONFIRMED'",
            screening_id,
        )
        twice = await conn.fetchval(
            """SELECT count(*) FROM (
                   SELECT s FROM reservations r, unnest(r.seats) AS s
                   WHERE r.screening_id = $1 AND r.state = 'CONFIRMED' GROUP BY s HAVING count(*) > 1
               ) AS doubled""",
            screening_id,
        )
        held = await conn.fetchval("SELECT count(*) FROM seat_claims WHERE screening_id = $1", screening_id)
        failures = {
            row["failure_reason"]: row["n"]
            for row in await conn.fetch(
                "SELECT failure_reason, count(*) AS n FROM reservations "
                "WHERE screening_id = $1 AND state = 'FAILED' GROUP BY failure_reason",
                screening_id,
            )
        }
    finally:
        await conn.close()
    return {
        "seats_sold": int(confirmed_seats),
        "sold_twice": int(twice),
        "seats_held": int(held),
        "reservations_by_state": states,
        "failed_by_reason": failures,
        "pending_after_s": round(time.perf_counter() - waited, 1),
    }


async def run_sellout(
    addresses: Mapping[str, str],
    manager: Metadata,
    customers: Sequence[Customer],
    *,
    buyers: int = 200,
    seats: int = 48,
    time_limit_s: float = 30.0,
    postgres_url: str | None = None,
    rpc_timeout_s: float = 10.0,
    rng: random.Random | None = None,
    run_tag: str | None = None,
) -> dict[str, Any]:
    """Run the race once; returns the result (see the module docstring), `passed` included.

    `addresses` maps service names to host:port (`movie` and `reservation` are used); the buyers
    take turns among `customers` (a customer may buy more than once, like a family).
    """
    if not customers:
        raise ValueError("the sellout needs at least one customer token")
    rng = rng or random.Random()
    tag = run_tag or uuid.uuid4().hex[:8]
    screening_id, all_seats = await schedule_screening(addresses["movie"], manager, seats, tag)
    async with open_channel(addresses["reservation"]) as channel:
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)
        propagation_s = await wait_until_known(stub, screening_id, customers[0].metadata)
        go = asyncio.Event()
        started = time.perf_counter()
        race = Race(screening_id, seats, all_seats, started, started + time_limit_s, rpc_timeout_s, stub, rng)
        crowd = [Buyer(i, customers[i % len(customers)]) for i in range(buyers)]
        tasks = [asyncio.create_task(_buyer(race, b, all_seats, go)) for b in crowd]
        race.started = time.perf_counter()
        race.ends = race.started + time_limit_s
        go.set()  # everyone at once: the sale opens
        # The buyers stop at the time limit; a call in flight then ends within its own timeout.
        _done, late = await asyncio.wait(tasks, timeout=time_limit_s + rpc_timeout_s + MAX_RETRY_WAIT_S + 5)
        for task in late:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:
                    race.outcomes[f"CLIENT_{type(error).__name__}"] += 1
        race_s = time.perf_counter() - race.started
    store = await store_check(postgres_url, screening_id) if postgres_url else None

    attempts = [b.attempts for b in crowd]
    saw_unavailable = sum(b.saw_unavailable for b in crowd)
    sold_twice = sum(1 for ids in race.confirmed.values() if len(ids) > 1)
    # A seat whose owner never got the answer still counts as sold when the store says so.
    seats_sold = max(race.sold, store["seats_sold"]) if store else race.sold
    checks = {
        "all seats sold": seats_sold == seats,
        "within the time limit": race.sold_out_at is not None and race.sold_out_at <= time_limit_s,
        "none sold twice": sold_twice == 0 and (store is None or store["sold_twice"] == 0),
        f"at most {UNAVAILABLE_SHARE_LIMIT:.0%} of buyers saw UNAVAILABLE": saw_unavailable
        <= UNAVAILABLE_SHARE_LIMIT * buyers,
    }
    return {
        "screening_id": screening_id,
        "buyers": buyers,
        "seats": seats,
        "time_limit_s": time_limit_s,
        "propagation_s": round(propagation_s, 2),
        "seats_sold": seats_sold,
        "seats_sold_per_answers": race.sold,
        "sold_twice": sold_twice,
        "sold_out_s": None if race.sold_out_at is None else round(race.sold_out_at, 2),
        "race_s": round(race_s, 2),
        "buyers_saw_unavailable": saw_unavailable,
        "buyers_saw_unavailable_share": round(saw_unavailable / buyers, 4),
        "buyers_saw_deadline_exceeded": sum(b.saw_deadline for b in crowd),
        "buyers_bought": sum(1 for b in crowd if b.ending == "bought"),
        "buyer_endings": dict(Counter(b.ending or "unfinished" for b in crowd)),
        "attempts_per_buyer": {
            "mean": round(statistics.fmean(attempts), 2),
            "p50": statistics.median(attempts),
            "max": max(attempts),
        },
        "purchases_per_buyer_mean": round(statistics.fmean(b.purchases for b in crowd), 2),
        "looks_per_buyer_mean": round(statistics.fmean(b.looks for b in crowd), 2),
        "outcomes": dict(race.outcomes.most_common()),
        "store": store,
        "checks": checks,
        "passed": all(checks.values()),
    }


def describe_result(result: Mapping[str, Any]) -> list[str]:
    """A few lines for a terminal or a report."""
    lines = [
        f"sellout: {result['buyers']} buyers for {result['seats']} seats: {result['seats_sold']} sold"
        f" ({result['sold_twice']} twice) in {result['sold_out_s'] if result['sold_out_s'] is not None else '-'} s"
        f" (limit {result['time_limit_s']:.0f} s); {result['buyers_saw_unavailable']} buyers"
        f" ({result['buyers_saw_unavailable_share']:.1%}) saw UNAVAILABLE,"
        f" {result['buyers_saw_deadline_exceeded']} DEADLINE_EXCEEDED",
        f"  attempts per buyer: mean {result['attempts_per_buyer']['mean']}, max {result['attempts_per_buyer']['max']};"
        f" endings {result['buyer_endings']}",
        f"  outcomes: {result['outcomes']}",
    ]
    if result.get("store"):
        store = result["store"]
        lines.append(
            f"  reservation's tables: {store['seats_sold']} seats sold, {store['sold_twice']} twice,"
            f" {store['seats_held']} held, by state {store['reservations_by_state']},"
            f" failed {store['failed_by_reason']}"
        )
    lines.append("  " + ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in result["checks"].items()))
    return lines


# ------------------------------------------------------------------------------------ CLI


@contextlib.contextmanager
def busy_cpu(processes: int) -> Iterator[None]:
    """`processes` spinning on a core each (a busy machine); they stop with this block, or when
    the process that started them dies (they watch their parent)."""
    burn = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    sum(range(20_000))\n"
    burners = [subprocess.Popen([sys.executable, "-c", burn, str(os.getpid())]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(timeout=10)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.sellout", description=__doc__.split("\n")[0])
    parser.add_argument("--use-running", action="store_true", help="against make up's stack (else a scratch one)")
    parser.add_argument("--buyers", type=int, default=200)
    parser.add_argument("--seats", type=int, default=48)
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds the buyers keep trying")
    parser.add_argument("--background-rate", type=float, default=0.0, help="default mix at this rate meanwhile")
    parser.add_argument("--cpu-burners", type=int, default=0, help="processes spinning on a core each meanwhile")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument(
        "--keep-data", action="store_true", help="with --use-running: leave the run's movies in the catalog"
    )
    return parser.parse_args(argv)


async def _sellout_with_background(
    args: argparse.Namespace, stack: Stack, tokens: Tokens, addresses: dict[str, str], tag: str
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    background: dict[str, Any] = {}
    runner: OpenLoopRunner | None = None
    load: asyncio.Task[None] | None = None
    workload: Workload | None = None
    if args.background_rate > 0:
        catalog = await seed_catalog(addresses["movie"], tokens.manager, tag, 5, 20, rng)
        await wait_until_propagated(
            catalog, addresses["reservation"], addresses["viewpage"], tokens.customers[0].metadata
        )
        workload = Workload(catalog, tokens, addresses, rng)
        recorder = Recorder()
        runner = OpenLoopRunner(workload.operations(), recorder, max_in_flight=500)
        duration = args.time_limit + 60  # outlasts the race; cancelled when it ends
        arrivals = schedule(args.background_rate, duration, DEFAULT_WEIGHTS, rng)
        start = time.perf_counter() + 5.0  # five seconds of load before the sale opens
        recorder.window = (start, start + duration)
        load = asyncio.create_task(runner.run(start, arrivals))
        await asyncio.sleep(5.0)
    try:
        result = await run_sellout(
            addresses,
            tokens.manager,
            tokens.customers,
            buyers=args.buyers,
            seats=args.seats,
            time_limit_s=args.time_limit,
            postgres_url=stack.store_urls.get("postgres"),
            rng=rng,
            run_tag=tag,
        )
    finally:
        if load is not None and runner is not None:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
            await runner.drain(10)
            background = {
                "rate_per_s": args.background_rate,
                "ok": runner.recorder.ok_count,
                "errors": dict(runner.recorder.errors_all_phases.most_common()),
            }
        if workload is not None:
            await workload.channels.close()
    result["background"] = background or None
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scratch = None if args.use_running else stacks.make_scratch_dir()
    stacks.prepare_environment(scratch)
    stack = stacks.describe(scratch)
    tag = uuid.uuid4().hex[:8]
    try:
        if scratch is None:
            stacks.use_running(stack)
        else:
            print(f"starting a scratch stack in {scratch} ...", flush=True)
            stacks.start_scratch(stack, scratch)
        tokens = acquire_tokens(stack.data_dir, stack.store_urls, uuid.uuid4().hex[:8], 24)
        addresses = {s: stack.address(s, "direct") for s in stack.grpc_ports}
        with busy_cpu(args.cpu_burners):
            result = asyncio.run(_sellout_with_background(args, stack, tokens, addresses, tag))
    finally:
        if scratch is None and not args.keep_data:
            from scripts.bench.cleanup import remove_run_data

            remove_run_data(stack, tag)

        stack.stop()
        if scratch is not None:
            stacks.remove_scratch(scratch)
    for line in describe_result(result):
        print(line)
    if result.get("background"):
        print(f"  background mix: {result['background']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
