"""The `cinema` command as installed in the venv (a real process), against the whole system in a
scratch folder, through its one address (the ingress): signing in, the lists as tables and as
JSON, a reservation and its cancellation, a review, the catalog as a manager, the demo seed, and
every kind of failure as one readable line with its exit code.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import pytest
from typer.testing import CliRunner

from cinema_cli.main import app
from scripts.stack import edge
from scripts.stack.process import free_port
from tests.browser.stack import Stack, eventually, scratch_stack

pytestmark = pytest.mark.integration

CINEMA = Path(sys.executable).parent / "cinema"


def run_cinema(*args: str) -> subprocess.CompletedProcess[str]:
    """`cinema` as a person runs it, with nothing set up."""
    return subprocess.run([str(CINEMA), *args], capture_output=True, text=True, timeout=120, check=False)


def reviews_of(cli: Cli, title: str) -> int:
    return int(next(m for m in cli.json("movies") if m["title"] == title).get("reviewCount", 0))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("cli") as running:
        yield running


class Cli:
    """`cinema` with its own config folder (its saved sign-in), pointed at the scratch stack."""

    def __init__(self, url: str, config: Path) -> None:
        self.env = {**os.environ, "CINEMA_URL": url, "CINEMA_CONFIG_DIR": str(config), "COLUMNS": "160"}
        self.config = config

    def __call__(self, *args: str, stdin: str | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CINEMA), *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == code, f"cinema {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def login(self, user: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        return self("login", user[0], "--password-stdin", stdin=user[1] + "\n")


@pytest.fixture(scope="module")
def cli(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(stack.base, tmp_path_factory.mktemp("cinema-config"))


@pytest.fixture(scope="module")
def showing(cli: Cli) -> dict[str, str]:
    """A demo movie and one of its screenings, as the commands list them."""
    movies = cli.json("movies")
    arrival = next(m for m in movies if m["title"] == "Arrival")
    screenings = cli.json("screenings", "Arrival")
    return {"movie_id": arrival["id"], "screening_id": screenings[0]["id"]}


def test_help_everywhere() -> None:
    # in-process (Typer's runner): the same app the console script runs, without 17 interpreter starts
    runner = CliRunner()
    commands = [
        [], ["login"], ["logout"], ["movies"], ["screenings"], ["board"], ["reserve"], ["cancel"],
        ["reservations"], ["review"], ["seed"], ["bench"], ["admin"], ["admin", "movie"], ["admin", "movie", "add"],
        ["admin", "screening"], ["admin", "screening", "add"],
    ]  # fmt: skip
    for command in commands:
        done = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert done.exit_code == 0, (command, done.output)
        assert f"Usage: cinema {' '.join(command)}".rstrip() in done.output, (command, done.output)
    top = run_cinema("--help")  # and once as the installed command
    assert top.returncode == 0 and "Exit codes" in top.stdout and "7 the cinema cannot be reached" in top.stdout


def test_sign_in_and_the_public_lists(cli: Cli, showing: dict[str, str]) -> None:
    wrong = cli("login", "demo-customer", "--password-stdin", stdin="not-the-password\n", code=3)
    assert "wrong username or password" in wrong.stderr
    assert not (cli.config / "session.json").exists()

    signed_in = cli.login(edge.DEMO_CUSTOMER)
    assert "Signed in to" in signed_in.stdout and "as demo-customer (customer)" in signed_in.stdout
    saved = cli.config / "session.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o700
    assert "popcorn" not in saved.read_text()

    table = cli("movies").stdout
    assert "Arrival" in table and "Paddington 2" in table and "Parasite" in table
    assert showing["movie_id"] in table  # ids are never cut: they are copied from here
    movies = cli.json("movies")
    assert {"Arrival", "Paddington 2", "Parasite"} <= {m["title"] for m in movies}
    assert cli.json("movies", "--genre", "family")[0]["title"] == "Paddington 2"

    screenings = cli("screenings", "arrival").stdout  # by title, any case
    assert showing["screening_id"] in screenings and "of 96" in screenings and "scheduled" in screenings
    assert cli("screenings", showing["movie_id"]).stdout.count("scheduled") == 2

    board = cli("board").stdout
    assert "Now showing" in board and showing["screening_id"] in board
    shown = cli.json("board")
    assert {m["title"] for m in shown["movies"]} >= {"Arrival", "Paddington 2", "Parasite"}

    # One page at a time: the last line says how to get the next; --all follows them all.
    first = cli("board", "--page-size", "1").stdout
    assert "More movies: cinema board --page-size 1 --page-token " in first
    token = first.rsplit("--page-token ", 1)[1].split()[0]
    second = cli.json("board", "--page-size", "1", "--page-token", token)
    assert (
        len(second["movies"]) == 1
        and second["movies"][0]["title"] != cli.json("board", "--page-size", "1")["movies"][0]["title"]
    )
    everything = cli.json("board", "--all", "--page-size", "1")
    assert [m["title"] for m in everything["movies"]] == [m["title"] for m in shown["movies"]]
    # By day (the cinema's calendar) and by movie.
    day = shown["days"][0]
    on_day = cli.json("board", "--day", day)
    assert on_day["movies"] and all(
        s["startTime"][:10] == day for m in on_day["movies"] for s in m["screenings"]
    )  # the demo stack's zone is UTC
    assert "Now showing on " + day in cli("board", "--day", day).stdout
    assert [m["movieId"] for m in cli.json("board", "--movie", "arrival")["movies"]] == [showing["movie_id"]]
    cli("board", "--day", "today")
    assert "--day must be a date" in cli("board", "--day", "someday", code=2).stderr


def test_reserve_list_cancel_and_review(cli: Cli, stack: Stack, showing: dict[str, str]) -> None:
    cli.login(edge.DEMO_CUSTOMER)
    screening = showing["screening_id"]
    seats = sorted(stack.free_seats(screening, 2, rows="DC"))
    free_before = stack.free_on_board(showing["movie_id"], screening)

    reserved = cli("reserve", screening, *[s.lower() for s in seats]).stdout
    assert f"Reserved {' '.join(seats)} for Arrival" in reserved and "confirmed, 23.00 EUR paid" in reserved
    reservation_id = reserved.strip().rsplit(" ", 1)[-1]
    uuid.UUID(reservation_id)

    taken = cli("reserve", screening, seats[0], code=6)
    assert "SEATS_TAKEN" in taken.stderr or "taken" in taken.stderr
    other_seat = stack.free_seats(screening, 1, rows="B")[0]
    declined = cli("reserve", screening, other_seat, "--card", "4000 0000 0000 0002", code=6)
    assert "declined" in declined.stderr.lower()

    listed = cli("reservations").stdout
    assert reservation_id in listed and " ".join(seats) in listed and "confirmed" in listed
    mine = cli.json("reservations")
    assert next(r for r in mine if r["id"] == reservation_id)["state"] == "RESERVATION_STATE_CONFIRMED"
    eventually("the seats on the board", lambda: stack.free_on_board(showing["movie_id"], screening) == free_before - 2)
    assert f"{free_before - 2} of 96" in cli("board").stdout

    cancelled = cli("cancel", reservation_id, "--reason", "plans changed").stdout
    assert f"Cancelled reservation {reservation_id}" in cancelled and "refund of 23.00 EUR follows" in cancelled
    again = cli.json("cancel", reservation_id)  # cancelling a cancelled reservation changes nothing
    assert again["state"] == "RESERVATION_STATE_CANCELLED"
    eventually("the seats free again", lambda: stack.free_on_board(showing["movie_id"], screening) == free_before)

    posted = cli("review", "Arrival", "5", "Heptapods, finally.").stdout
    assert "Posted your review of Arrival (5/5)" in posted
    eventually("the review counted", lambda: reviews_of(cli, "Arrival"))
    assert cli("review", "Arrival", "6", code=2).returncode == 2  # out of range: a usage error


def test_the_catalog_as_a_manager_and_the_demo_seed(cli: Cli) -> None:
    cli.login(edge.DEMO_CUSTOMER)
    refused = cli("admin", "movie", "add", "Not Yours", "--minutes", "90", code=4)
    assert "demo-customer is not a manager" in refused.stderr

    cli.login(edge.DEMO_MANAGER)
    title = f"The Command Line {uuid.uuid4().hex[:6]}"
    added = cli("admin", "movie", "add", title, "--minutes", "88", "--genre", "Documentary", "--json")
    movie = json.loads(added.stdout)
    assert movie["title"] == title and movie["genres"] == ["documentary"]
    starts = (datetime.now() + timedelta(days=4)).replace(hour=20, minute=30, second=0, microsecond=0)
    scheduled = cli(
        "admin", "screening", "add", title, "--hall", "5", "--start", starts.isoformat(timespec="minutes"),
        "--rows", "4", "--seats-per-row", "6", "--price", "8.90",
    ).stdout  # fmt: skip
    assert f"Scheduled {title} in hall 5" in scheduled
    screening_id = scheduled.strip().rsplit(" ", 1)[-1]
    listed = cli.json("screenings", title)
    assert [s["id"] for s in listed] == [screening_id]
    assert listed[0]["price"] == {"minorUnits": "890", "currencyCode": "EUR"}
    eventually("the new movie on the board", lambda: title in cli("board").stdout)

    seeded = cli("seed").stdout  # make up seeded already: nothing new, the same ids
    assert "Demo catalog: 6 screenings of 3 movies (0 new)." in seeded
    assert {s["created"] for s in cli.json("seed")} == {False}


def test_failures_are_one_line_with_their_exit_code(cli: Cli, stack: Stack) -> None:
    cli.login(edge.DEMO_CUSTOMER)
    unknown = cli("reserve", str(uuid.uuid4()), "A1", code=5)
    assert unknown.stderr.startswith("error: ") and len(unknown.stderr.strip().splitlines()) == 1
    assert cli("reserve", "not-an-id", "A1", code=2).stderr.startswith("error: SCREENING must be an id")
    assert "not a seat: Z0" in cli("reserve", str(uuid.uuid4()), "Z0", code=2).stderr
    assert cli("screenings", "No Such Movie", code=5).stderr.startswith("error: no movie titled")
    assert cli("cancel", str(uuid.uuid4()), code=5).returncode == 5
    assert cli("no-such-command", code=2).returncode == 2

    cli("logout")
    assert "not signed in" in cli("reservations", code=3).stderr
    assert "Not signed in" in cli("logout").stdout

    down = Cli(f"http://127.0.0.1:{free_port()}", cli.config)
    refused = down("board", code=7)
    assert "cannot reach the cinema" in refused.stderr and "Traceback" not in refused.stderr


def test_bench_is_a_shortcut_to_the_benchmark() -> None:
    done = run_cinema("bench", "--", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: python -m scripts.bench" in done.stdout


def test_a_benchmark_on_the_running_stack_leaves_the_catalog_as_it_was(cli: Cli, stack: Stack) -> None:
    """`cinema bench -- --use-running` (issue 20): the run's movies, screenings and bookings are
    real while it runs, and gone from the movie list and the board when it ends."""

    def catalog() -> tuple[set[str], set[str]]:
        board: set[str] = set()
        token = ""
        while True:
            page = stack.get(f"/v1/board?pageSize=100&pageToken={token}")
            board |= {m["movieId"] for m in page.get("movies", [])}
            token = page.get("nextPageToken", "")
            if not token:
                return {m["id"] for m in cli.json("movies")}, board

    before = catalog()
    load = ["--duration", "3", "--warmup", "1", "--rate", "4", "--customers", "2"]
    small = ["--movies", "2", "--screenings", "3", "--raw-seconds", "0", "--profile-seconds", "0"]
    done = subprocess.run(
        [str(CINEMA), "bench", "--", "--use-running", *load, *small],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the board shows all 3 screenings" in done.stdout, done.stdout[-3000:]
    assert "the board no longer shows the 2 benchmark movies" in done.stdout, done.stdout[-3000:] + done.stderr
    assert "the run's customer accounts: removed 2 of 24 accounts" in done.stdout, done.stdout[-3000:]
    assert catalog() == before
    # the run's customers are gone from identity's own table
    tag = re.search(r"benchmark (\d{8}T\d{6}): report", done.stdout)
    assert tag is not None, done.stdout[:2000]
    state = json.loads((stack.data / "run" / "state.json").read_text())
    postgres = next(c["url"] for c in state["components"] if c["name"] == "postgres")

    async def bench_accounts() -> int:
        connection = await asyncpg.connect(urlparse(postgres)._replace(path="/identity").geturl())
        try:
            count = await connection.fetchval("SELECT count(*) FROM users WHERE username LIKE $1", f"bench-{tag[1]}-%")
            return int(count)
        finally:
            await connection.close()

    assert asyncio.run(bench_accounts()) == 0
