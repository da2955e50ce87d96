"""The `cinema` command: browse, reserve, review and manage the catalog through the ingress.

Every command speaks REST/JSON to one address, the ingress (default http://127.0.0.1:18080;
`--url` or `CINEMA_URL` to change it). `cinema login` (or `cinema signup`, for a new customer)
keeps a token and its refresh token (see cinema_cli.session);
lists are tables, `--json` prints the API's JSON instead; failures print one line on stderr
and exit with a code that says what went wrong (`cinema --help` lists them).
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from cinema_cli import render, session
from cinema_cli.api import (
    EXIT_CODES,
    FORBIDDEN,
    NOT_FOUND,
    NOT_SIGNED_IN,
    USAGE,
    Api,
    CliError,
    Issued,
)

DEFAULT_URL = "http://127.0.0.1:18080"
TEST_CARD = "4242424242424242"
_SEAT = re.compile(r"^[A-Z][1-9][0-9]?$")
_EPILOG = "Exit codes:\n\n" + "\n\n".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())

app = typer.Typer(
    name="cinema",
    help="Browse the board, reserve seats, review movies and manage the catalog of the Cinema system.",
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin = typer.Typer(
    help="Manage the catalog, see who booked and the sales (needs the manager role).", no_args_is_help=True
)
admin_movie = typer.Typer(help="Movies of the catalog.", no_args_is_help=True)
admin_screening = typer.Typer(help="Screenings of a movie.", no_args_is_help=True)
app.add_typer(admin, name="admin")
admin.add_typer(admin_movie, name="movie")
admin.add_typer(admin_screening, name="screening")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
P = ParamSpec("P")
R = TypeVar("R")


class Settings:
    url: str = DEFAULT_URL


settings = Settings()


@app.callback()
def main(
    url: Annotated[
        str, typer.Option("--url", envvar="CINEMA_URL", help="The cinema's address (its ingress).")
    ] = DEFAULT_URL,
) -> None:
    """Browse the board, reserve seats, review movies and manage the catalog of the Cinema system."""
    settings.url = url.rstrip("/")


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a CliError into its one line on stderr and its exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as error:
            render.err.print(f"[bold red]error:[/] {error.message}", markup=True, highlight=False)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return run


def _api(*, signed_in: bool = False) -> Api:
    """The ingress; with `signed_in`, the saved session for it (or a clear refusal)."""
    if not signed_in:
        return Api(settings.url)
    saved = session.load(settings.url)
    if saved is None:
        raise CliError(NOT_SIGNED_IN, f"not signed in to {settings.url}: run `cinema login`")
    if saved.due_for_refresh and saved.refresh_token is not None:
        saved = _refreshed(saved.refresh_token)
    if saved.expired:
        raise CliError(NOT_SIGNED_IN, f"your session as {saved.username} has ended: run `cinema login` again")
    return Api(settings.url, saved.token)


def _refreshed(refresh_token: str) -> session.Session:
    """The session renewed by its refresh token (saved at once: the old refresh token is spent)."""
    with Api(settings.url) as api:
        try:
            issued = api.refresh_grant(refresh_token)
        except CliError:
            session.forget(settings.url)
            raise
    renewed = session.session_from_token(
        settings.url, issued.access_token, issued.expires_in, issued.refresh_token, issued.refresh_expires_in
    )
    session.save(renewed)
    return renewed


def _save_sign_in(issued: Issued) -> tuple[session.Session, str]:
    """Keep a new sign-in; returns it and a sentence saying how long it lasts and where it is kept."""
    saved = session.session_from_token(
        settings.url, issued.access_token, issued.expires_in, issued.refresh_token, issued.refresh_expires_in
    )
    path = session.save(saved)
    if saved.refresh_expires_at is not None:
        days = max(1, round((saved.refresh_expires_at - datetime.now().timestamp()) / 86400))
        lasts = f"the session renews itself for up to {days} days"
    else:
        lasts = f"the session lasts {max(0, round((saved.expires_at - datetime.now().timestamp()) / 60))} min"
    return saved, f"{lasts} (kept in {path})"


def _needs_role(role: str) -> None:
    saved = session.load(settings.url)
    if saved is not None and not saved.expired and role not in saved.roles:
        raise CliError(FORBIDDEN, f"{saved.username} is not a {role}: sign in as one (`cinema login`)")


def _uuid(value: str, what: str) -> str:
    """`value` as an id, or a usage error naming `what`."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CliError(USAGE, f"{what} must be an id (a UUID), not {value!r}") from None


def _movie_id(api: Api, movie: str) -> str:
    """A movie named by its id or by its title (exactly, any case)."""
    try:
        return str(uuid.UUID(movie))
    except ValueError:
        pass
    found = [m for m in api.pages("/v1/movies", "movies") if m["title"].casefold() == movie.casefold()]
    if not found:
        raise CliError(NOT_FOUND, f"no movie titled {movie!r}: `cinema movies` lists them")
    if len(found) > 1:
        raise CliError(USAGE, f"{len(found)} movies are titled {movie!r}: give its id (`cinema movies`)")
    return str(found[0]["id"])


# --- signing in -------------------------------------------------------------------------------


@app.command()
@reported
def login(
    username: Annotated[str | None, typer.Argument(help="Your username (asked when left out).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (first line).")
    ] = False,
) -> None:
    """Sign in (OAuth2 password grant) and keep the token for the next commands."""
    if username is None:
        username = typer.prompt("username")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else typer.prompt("password", hide_input=True)
    with _api() as api:
        issued = api.password_grant(username, password)
    saved, lasts = _save_sign_in(issued)
    render.say(f"Signed in to {settings.url} as {saved.username} ({', '.join(saved.roles) or 'no roles'}); {lasts}.")


@app.command()
@reported
def signup(
    email: Annotated[
        str | None, typer.Argument(help="Your e-mail address: it is your username (asked when left out).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (first line).")
    ] = False,
) -> None:
    """Open a customer account (e-mail and password, at least 12 characters) and sign in with it."""
    if email is None:
        email = typer.prompt("e-mail address")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password (at least 12 characters)", hide_input=True, confirmation_prompt=True)
    with _api() as api:
        account = api.sign_up(email, password).get("account", {})
        issued = api.password_grant(str(account.get("username", email)), password)
    saved, lasts = _save_sign_in(issued)
    render.say(f"Welcome: account {saved.username} opened on {settings.url} and signed in (customer); {lasts}.")


@app.command()
@reported
def logout() -> None:
    """Sign out of this cinema: the refresh token is revoked and the saved sign-in forgotten."""
    saved = session.load(settings.url)
    if saved is not None and saved.refresh_token is not None:
        with _api() as api:
            try:
                api.revoke(saved.refresh_token)
            except CliError as error:  # signed out here all the same; it ends on its own later
                render.err.print(
                    f"note: the cinema could not revoke the session now ({error.message})", highlight=False
                )
    if session.forget(settings.url):
        render.say(f"Signed out of {settings.url}.")
    else:
        render.say(f"Not signed in to {settings.url}.")


# --- browsing ---------------------------------------------------------------------------------


@app.command()
@reported
def movies(
    genre: Annotated[str, typer.Option(help="Only movies of this genre.")] = "",
    json_: JsonOption = False,
) -> None:
    """List the movies of the catalog."""
    with _api() as api:
        found = api.pages("/v1/movies", "movies", params={"genre": genre} if genre else None)
    if json_:
        render.print_json(found)
        return
    render.table(
        "Movies",
        ("ID", "Title", "Genres", "Minutes", "Reviews", "Rating"),
        (
            (
                m["id"],
                m["title"],
                ", ".join(m.get("genres", [])),
                str(m.get("durationMinutes", "")),
                str(m.get("reviewCount", 0)),
                render.rating(m),
            )
            for m in found
        ),
        ids=1,
    )


@app.command()
@reported
def screenings(
    movie: Annotated[str, typer.Argument(help="The movie: its id or its title.")],
    json_: JsonOption = False,
) -> None:
    """List a movie's screenings, with the seats still free."""
    with _api() as api:
        movie_id = _movie_id(api, movie)
        listed = api.pages(f"/v1/movies/{movie_id}/screenings", "screenings")
        try:
            board = api.call("GET", f"/v1/board/movies/{movie_id}")["movie"].get("screenings", [])
        except CliError as error:
            if error.exit_code != NOT_FOUND:
                raise
            board = []  # not on the board (nothing to come)
    free = {s["screeningId"]: (s.get("freeSeats", 0), s.get("totalSeats", 0)) for s in board}
    if json_:
        render.print_json(
            [{**s, "freeSeats": free.get(s["id"], (None, None))[0]} for s in listed]  # null: not on the board
        )
        return
    render.table(
        f"Screenings of {listed[0]['movieTitle'] if listed else movie}",
        ("ID", "Starts", "Hall", "Price", "Free", "State"),
        (
            (
                s["id"],
                render.when(s.get("startTime")),
                s.get("hall", ""),
                render.money(s.get("price")),
                f"{free[s['id']][0]} of {free[s['id']][1]}" if s["id"] in free else "-",
                render.state(s.get("state"), "SCREENING_STATE_"),
            )
            for s in listed
        ),
        ids=1,
    )


def _board_day(api: Api, day: str) -> str:
    """`--day` as the API takes it: YYYY-MM-DD, or today/tomorrow in the cinema's time zone."""
    word = day.strip().casefold()
    if word not in ("today", "tomorrow"):
        try:
            return date.fromisoformat(day.strip()).isoformat()
        except ValueError:
            raise CliError(USAGE, f"--day must be a date (YYYY-MM-DD), today or tomorrow, not {day!r}") from None
    zone_name = str(api.call("GET", "/v1/board", params={"page_size": 1}).get("timeZone") or "UTC")
    try:
        zone: tzinfo = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    today = datetime.now(zone).date()
    return (today + timedelta(days=1 if word == "tomorrow" else 0)).isoformat()


@app.command()
@reported
def board(
    genre: Annotated[str, typer.Option(help="Only movies of this genre.")] = "",
    day: Annotated[
        str, typer.Option(help="Only screenings of this day: YYYY-MM-DD, today or tomorrow (the cinema's calendar).")
    ] = "",
    movie: Annotated[str, typer.Option(help="Only this movie (its id or its exact title).")] = "",
    page_size: Annotated[
        int, typer.Option("--page-size", min=0, max=100, help="Movies per page (0: the server's default, 50).")
    ] = 0,
    page_token: Annotated[str, typer.Option("--page-token", help="Continue where a previous page ended.")] = "",
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, not just one.")] = False,
    json_: JsonOption = False,
) -> None:
    """Show the board: the movies showing by title, their screenings to come and their free seats.

    One page at a time (its last line says how to get the next), `--all` for every page.
    """
    with _api() as api:
        params: dict[str, Any] = {}
        if genre:
            params["genre"] = genre
        if day:
            params["showing_on"] = _board_day(api, day)
        if movie:
            params["movie_id"] = _movie_id(api, movie)
        if page_size:
            params["page_size"] = page_size
        if all_pages:
            shown: dict[str, Any] = {"movies": api.pages("/v1/board", "movies", params=params), "nextPageToken": ""}
        else:
            shown = api.call("GET", "/v1/board", params={**params, "page_token": page_token} if page_token else params)
    if json_:
        render.print_json(shown)
        return
    rows = []
    for entry in shown.get("movies", []):
        reviews = f"{render.rating(entry)} ({entry.get('reviewCount', 0)})"
        for index, s in enumerate(entry.get("screenings", [])):
            rows.append(
                (
                    s["screeningId"],
                    entry["title"] if index == 0 else "",
                    reviews if index == 0 else "",
                    render.when(s.get("startTime")),
                    s.get("hall", ""),
                    render.money(s.get("price")),
                    f"{s.get('freeSeats', 0)} of {s.get('totalSeats', 0)}",
                )
            )
    title = f"Now showing on {params['showing_on']}" if day else "Now showing"
    render.table(title, ("Screening", "Movie", "Rating", "Starts", "Hall", "Price", "Free"), rows, ids=1)
    if shown.get("nextPageToken"):
        again = " ".join(
            [
                "cinema board",
                *(f"--{name} {shlex.quote(value)}" for name, value in (("genre", genre), ("day", day)) if value),
                *([f"--movie {params['movie_id']}"] if movie else []),
                *([f"--page-size {page_size}"] if page_size else []),
                f"--page-token {shown['nextPageToken']}",
            ]
        )
        render.say(f"More movies: {again}  (or --all)")


# --- booking ------------------------------------------------------------------------------------


def _expiry(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2})/(\d{2}|\d{4})", value.strip())
    if not match:
        raise CliError(USAGE, f"--expiry must be MM/YYYY (or MM/YY), not {value!r}")
    month, year = int(match[1]), int(match[2])
    return month, year + 2000 if year < 100 else year


def _reservation_rows(found: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            r["id"],
            r.get("movieTitle", ""),
            render.when(r.get("startTime")),
            r.get("hall", ""),
            " ".join(r.get("seats", [])),
            render.money(r.get("amount")),
            render.state(r.get("state"), "RESERVATION_STATE_"),
        )
        for r in found
    ]


_RESERVATION_COLUMNS = ("ID", "Movie", "Starts", "Hall", "Seats", "Amount", "State")


@app.command()
@reported
def reserve(
    screening: Annotated[str, typer.Argument(help="The screening's id (`cinema screenings MOVIE`).")],
    seats: Annotated[list[str], typer.Argument(help="One to ten seats, e.g. A1 A2.")],
    card: Annotated[str, typer.Option(help="Card number (the default is the test card that is approved).")] = TEST_CARD,
    expiry: Annotated[str, typer.Option(help="Card expiry, MM/YYYY.")] = f"12/{datetime.now().year + 2}",
    cvc: Annotated[str, typer.Option(help="Card verification code.")] = "123",
    json_: JsonOption = False,
) -> None:
    """Reserve seats of a screening and pay for them."""
    screening_id = _uuid(screening, "SCREENING")
    chosen = [seat.strip().upper() for seat in seats]
    bad = [seat for seat in chosen if not _SEAT.match(seat)]
    if bad:
        raise CliError(USAGE, f"not a seat: {', '.join(bad)} (seats are a row letter and a number, e.g. A1)")
    month, year = _expiry(expiry)
    body = {
        "screeningId": screening_id,
        "seats": chosen,
        "requestId": str(uuid.uuid4()),
        "card": {"number": card.replace(" ", ""), "expiryMonth": month, "expiryYear": year, "cvc": cvc},
    }
    with _api(signed_in=True) as api:
        reservation = api.call("POST", "/v1/reservations", body=body, auth=True)["reservation"]
    if json_:
        render.print_json(reservation)
        return
    render.say(
        f"Reserved {' '.join(reservation.get('seats', []))} for {reservation.get('movieTitle', '')}, "
        f"{render.when(reservation.get('startTime'))}, hall {reservation.get('hall', '')}: "
        f"{render.state(reservation.get('state'), 'RESERVATION_STATE_')}, "
        f"{render.money(reservation.get('amount'))} paid.\nReservation {reservation['id']}"
    )


@app.command()
@reported
def cancel(
    reservation: Annotated[str, typer.Argument(help="The reservation's id (`cinema reservations`).")],
    reason: Annotated[str, typer.Option(help="Why (optional).")] = "",
    json_: JsonOption = False,
) -> None:
    """Cancel one of your reservations; the refund follows."""
    reservation_id = _uuid(reservation, "ID")
    with _api(signed_in=True) as api:
        cancelled = api.call(
            "POST", f"/v1/reservations/{reservation_id}:cancel", body={"reason": reason} if reason else {}, auth=True
        )["reservation"]
    if json_:
        render.print_json(cancelled)
        return
    render.say(
        f"Cancelled reservation {cancelled['id']} ({' '.join(cancelled.get('seats', []))} for "
        f"{cancelled.get('movieTitle', '')}); the refund of {render.money(cancelled.get('amount'))} follows."
    )


@app.command()
@reported
def reservations(json_: JsonOption = False) -> None:
    """List your reservations, newest first."""
    with _api(signed_in=True) as api:
        found = api.pages("/v1/reservations", "reservations", auth=True)
    if json_:
        render.print_json(found)
        return
    render.table("My reservations", _RESERVATION_COLUMNS, _reservation_rows(found), ids=1)


@app.command()
@reported
def review(
    movie: Annotated[str, typer.Argument(help="The movie: its id or its title.")],
    rating: Annotated[int, typer.Argument(min=1, max=5, help="From 1 (worst) to 5 (best).")],
    text: Annotated[str, typer.Argument(help="What you thought (optional).")] = "",
    json_: JsonOption = False,
) -> None:
    """Review a movie."""
    with _api(signed_in=True) as api:
        movie_id = _movie_id(api, movie)
        posted = api.call(
            "POST",
            f"/v1/movies/{movie_id}/reviews",
            body={"rating": rating, "text": text},
            params={"request_id": str(uuid.uuid4())},
            auth=True,
        )["review"]
    if json_:
        render.print_json(posted)
        return
    render.say(f"Posted your review of {movie} ({rating}/5): review {posted['id']}")


# --- the catalog (managers) ------------------------------------------------------------------------


@admin_movie.command("add")
@reported
def add_movie(
    title: Annotated[str, typer.Argument(help="The title.")],
    minutes: Annotated[int, typer.Option(min=1, max=600, help="Running time in minutes.")],
    genre: Annotated[list[str] | None, typer.Option(help="A genre (repeat for more).")] = None,
    description: Annotated[str, typer.Option(help="Synopsis.")] = "",
    json_: JsonOption = False,
) -> None:
    """Register a movie."""
    _needs_role("manager")
    with _api(signed_in=True) as api:
        created = api.call(
            "POST",
            "/v1/movies",
            body={
                "title": title,
                "durationMinutes": minutes,
                "genres": [g.strip().lower() for g in genre or [] if g.strip()],
                "description": description,
            },
            params={"request_id": str(uuid.uuid4())},
            auth=True,
        )["movie"]
    if json_:
        render.print_json(created)
        return
    render.say(f"Registered {created['title']}: movie {created['id']}")


def _start(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(USAGE, f"--start must be a date and time like 2026-12-24T20:00, not {value!r}") from None
    return moment.astimezone().isoformat()  # a time without a zone is local


@admin_screening.command("add")
@reported
def add_screening(
    movie: Annotated[str, typer.Argument(help="The movie: its id or its title.")],
    hall: Annotated[str, typer.Option(help="Name of the hall.")],
    start: Annotated[str, typer.Option(help="Start, ISO 8601 (local time unless a zone is given).")],
    rows: Annotated[int, typer.Option(min=1, max=26, help="Rows of seats (A, B, ...).")] = 8,
    seats_per_row: Annotated[int, typer.Option(min=1, max=99, help="Seats in each row.")] = 12,
    price: Annotated[str, typer.Option(help="Price of one seat, e.g. 11.50.")] = "11.50",
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "EUR",
    json_: JsonOption = False,
) -> None:
    """Schedule a screening of a movie."""
    _needs_role("manager")
    if not re.fullmatch(r"\d+([.,]\d{1,2})?", price.strip()):
        raise CliError(USAGE, f"--price must be an amount like 11.50, not {price!r}")
    minor = round(float(price.strip().replace(",", ".")) * 100)
    starts = _start(start)
    with _api(signed_in=True) as api:
        movie_id = _movie_id(api, movie)
        scheduled = api.call(
            "POST",
            f"/v1/movies/{movie_id}/screenings",
            body={
                "hall": hall,
                "startTime": starts,
                "seatMap": {"rows": rows, "seatsPerRow": seats_per_row},
                "price": {"minorUnits": str(minor), "currencyCode": currency.upper()},
            },
            params={"request_id": str(uuid.uuid4())},
            auth=True,
        )["screening"]
    if json_:
        render.print_json(scheduled)
        return
    render.say(
        f"Scheduled {scheduled.get('movieTitle', movie)} in hall {scheduled['hall']}, "
        f"{render.when(scheduled.get('startTime'))}: screening {scheduled['id']}"
    )


# --- the manager's view (issue 16) -----------------------------------------------------------------

_STATES = ("pending", "confirmed", "cancelled", "failed")


@admin.command("reservations")
@reported
def admin_reservations(
    screening: Annotated[str, typer.Argument(help="The screening's id (`cinema screenings MOVIE`).")],
    state: Annotated[str, typer.Option(help=f"Only this state: {', '.join(_STATES)}.")] = "",
    json_: JsonOption = False,
) -> None:
    """List who booked a screening: its reservations, newest first (managers)."""
    _needs_role("manager")
    screening_id = _uuid(screening, "SCREENING")
    params = {}
    if state:
        if state.lower() not in _STATES:
            raise CliError(USAGE, f"--state must be one of {', '.join(_STATES)}, not {state!r}")
        params["state"] = f"RESERVATION_STATE_{state.upper()}"
    with _api(signed_in=True) as api:
        found = api.pages(f"/v1/screenings/{screening_id}/reservations", "reservations", params=params, auth=True)
    if json_:
        render.print_json(found)
        return
    rows = [
        (
            r["id"],
            r.get("customerId", ""),
            " ".join(r.get("seats", [])),
            render.money(r.get("amount")),
            render.state(r.get("state"), "RESERVATION_STATE_"),
            render.when(r.get("createTime")),
            r.get("reason", ""),
        )
        for r in found
    ]
    render.table(
        f"Reservations of screening {screening_id}",
        ("ID", "Customer", "Seats", "Amount", "State", "Booked", "Reason"),
        rows,
        ids=1,
    )


def _sales_row(label: str, sales: dict[str, Any]) -> tuple[str, ...]:
    return (
        label,
        str(sales.get("seatsSold", 0)),
        str(sales.get("seatsFree", 0)),
        str(sales.get("seatsBlocked", 0)),
        str(sales.get("cancellations", 0)),
        render.money(sales.get("revenue")),
        render.money(sales.get("refunds")),
        render.money(sales.get("netRevenue")),
    )


_SALES_COLUMNS = ("", "Sold", "Free", "Blocked", "Cancelled", "Revenue", "Refunds", "Net")


@admin.command("sales")
@reported
def admin_sales(
    movie: Annotated[str, typer.Argument(help="The movie: its id or its title (or give --screening).")] = "",
    screening: Annotated[str, typer.Option(help="One screening's sales instead of a movie's.")] = "",
    json_: JsonOption = False,
) -> None:
    """Show the sales of a movie (each screening and the total) or of one screening (managers)."""
    _needs_role("manager")
    if bool(movie) == bool(screening):
        raise CliError(USAGE, "name a MOVIE or give --screening ID (one of them)")
    with _api(signed_in=True) as api:
        if screening:
            answer = api.call("GET", f"/v1/sales/screenings/{_uuid(screening, '--screening')}", auth=True)
        else:
            answer = api.call("GET", f"/v1/sales/movies/{_movie_id(api, movie)}", auth=True)
    if json_:
        render.print_json(answer)
        return
    if screening:
        shown = answer.get("screening", {})
        parts, totals, title = [shown], shown.get("sales", {}), f"Sales of screening {shown.get('screeningId', '')}"
    else:
        parts, totals, title = (
            answer.get("screenings", []),
            answer.get("sales", {}),
            f"Sales of {answer.get('title', '')}",
        )
    rows = [
        _sales_row(
            f"{render.when(s.get('startTime'))} {s.get('hall', '')}" + (" (cancelled)" if s.get("cancelled") else ""),
            s.get("sales", {}),
        )
        for s in parts
    ]
    if not screening:
        rows.append(_sales_row("Total", totals))
    render.table(title, _SALES_COLUMNS, rows)
    timeline = [
        (
            render.when(p.get("startTime")),
            str(p.get("seatsSold", 0)),
            render.money(p.get("revenue")),
            render.money(p.get("refunds")),
        )
        for p in totals.get("timeline", [])
    ]
    render.table("Sales hour by hour", ("Hour", "Seats sold", "Revenue", "Refunds"), timeline)


# --- tools -------------------------------------------------------------------------------------


@app.command()
@reported
def seed(json_: JsonOption = False) -> None:
    """Register the demo catalog (three movies, two screenings each) as the signed-in manager; idempotent."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cinema_cli.seed import STEPS, seed_demo_catalog

    _needs_role("manager")
    with _api(signed_in=True) as api:
        if json_:
            seeded = seed_demo_catalog(api, lambda _: None)
        else:
            with Progress(
                TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), console=render.out
            ) as progress:
                task = progress.add_task("seeding the demo catalog", total=STEPS)

                def step(what: str) -> None:
                    progress.update(task, advance=1, description=what)

                seeded = seed_demo_catalog(api, step)
                progress.update(task, description="demo catalog ready")
    if json_:
        render.print_json(
            [
                {
                    "title": s.title,
                    "movieId": s.movie_id,
                    "screeningId": s.screening_id,
                    "startTime": s.starts.isoformat(),
                    "created": s.created,
                }
                for s in seeded
            ]
        )
        return
    created, titles = sum(s.created for s in seeded), len({s.title for s in seeded})
    render.say(f"Demo catalog: {len(seeded)} screenings of {titles} movies ({created} new).")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="`cinema bench -- --help` shows the benchmark's own options.",
)
def bench(ctx: typer.Context) -> None:
    """Run the benchmark (`python -m scripts.bench`) with the arguments given."""
    done = subprocess.run([sys.executable, "-m", "scripts.bench", *ctx.args], check=False)
    raise typer.Exit(done.returncode)
