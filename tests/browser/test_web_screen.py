"""The web screen in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium,
installed by scripts/bootstrap; never a downloaded browser) against the whole system in a scratch
folder, through its one address (the ingress), as people use it.

A visitor sees the board; a customer signs in, picks seats on the seat map, pays with the test
card, sees the reservation, and every open page's free-seat count follows live (Server-Sent
Events fed by the read model), whoever reserved: this page, another browser, a REST client; the
customer cancels; a manager registers a movie and schedules a screening, which appears on the
board of every open page. Screenshots go to .data/screenshots/ (CINEMA_README_SCREENSHOT=1 also
refreshes docs/images/board.png); an accessibility smoke check runs on the page as it is.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    expect,
)

from scripts.stack import edge
from tests.browser.stack import REPO, Stack, eventually, scratch_stack

pytestmark = pytest.mark.integration

SHOTS = REPO / ".data" / "screenshots"
README_SHOT = REPO / "docs" / "images" / "board.png"
LIVE_TIMEOUT_MS = 15_000  # an event's way: outbox relay -> NATS -> viewpage -> Redis -> web -> page -> REST


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("web") as running:
        yield running


class Watched:
    """A page and what its console said (a CSP violation or a script error shows up there)."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page = context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(message.text)


@pytest.fixture
def open_page(browser: Browser, stack: Stack) -> Iterator[Watched]:
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 900})
    watched = Watched(context)
    watched.page.goto(stack.base + "/")
    expect(watched.page.locator("#live")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
    yield watched
    context.close()


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, user: tuple[str, str]) -> None:
    page.get_by_label("Username").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(user[0])
    expect(page.get_by_role("button", name="Sign in")).to_be_hidden()
    expect(page.get_by_label("Password")).to_be_hidden()


def free_cell(page: Page, screening_id: str) -> Locator:
    return page.locator(f"#movies .showtime[data-screening-id='{screening_id}'] .free")


def first_showing(stack: Stack) -> tuple[str, str, str, int]:
    """The first movie of the board, its first screening and that screening's seats in total."""
    movie = stack.get("/v1/board")["movies"][0]
    screening = movie["screenings"][0]
    return movie["movieId"], movie["title"], screening["screeningId"], int(screening["totalSeats"])


def test_the_board_is_public_and_follows_live(open_page: Watched, stack: Stack) -> None:
    page = open_page.page
    expect(page.get_by_role("heading", name="Now showing")).to_be_visible()
    first_day = stack.get("/v1/board")["days"][0]
    # the page opens on the first day with screenings, that day's showtimes as chips
    expect(page.locator("#days button[aria-pressed='true']")).to_have_attribute("data-day", first_day)
    board = stack.get(f"/v1/board?showingOn={first_day}")["movies"]
    assert len(board) >= 3  # the demo catalog of make up
    for movie in board:
        card = page.locator(f"article[data-movie-id='{movie['movieId']}']")
        expect(card.get_by_role("heading", name=movie["title"])).to_be_visible()
        expect(card.locator(".showtime")).to_have_count(len(movie["screenings"]))
        expect(card).to_contain_text(f"{movie.get('reviewCount', 0)} review")
    # not signed in: the booking, reservations and catalog parts are not offered
    expect(page.locator("#mine")).to_be_hidden()
    expect(page.locator("#manage")).to_be_hidden()
    shot(page, "01-board")
    assert not open_page.problems, open_page.problems


def readme_shots(browser: Browser, stack: Stack) -> None:
    """The README's screenshots at a phone's and a desktop's width: the board with its day picker,
    a seat map, a customer's reservations (CINEMA_README_SCREENSHOT=1)."""
    _, _, screening_id, _ = first_showing(stack)
    sizes: tuple[tuple[str, ViewportSize], ...] = (
        ("phone", {"width": 390, "height": 844}),
        ("desktop", {"width": 1280, "height": 900}),
    )
    for size, viewport in sizes:
        context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport=viewport)
        page = context.new_page()
        page.goto(stack.base + "/")
        expect(page.locator("#live")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
        expect(page.locator("#movies .showtime").first).to_be_visible()
        page.screenshot(path=str(README_SHOT.parent / f"web-board-{size}.png"))
        sign_in(page, edge.DEMO_CUSTOMER)
        page.goto(stack.base + f"/#screening={screening_id}")
        expect(page.locator("#seatmap .seat").first).to_be_visible()
        page.locator("#seatmap .seat:not([disabled])").nth(3).click()
        page.locator("#booking").screenshot(path=str(README_SHOT.parent / f"web-seats-{size}.png"))
        page.get_by_role("button", name="Close").click()
        page.locator("#mine").scroll_into_view_if_needed()
        page.locator("#mine").screenshot(path=str(README_SHOT.parent / f"web-mine-{size}.png"))
        context.close()


def test_browse_like_a_cinema_site_days_search_genre_movie_page_and_seats_by_address(
    open_page: Watched, stack: Stack
) -> None:
    page = open_page.page
    board = stack.get("/v1/board")
    second = board["days"][1]  # the demo catalog plays on two days
    day_two = stack.get(f"/v1/board?showingOn={second}")["movies"]
    # another day: that day's showtimes, each chip a time (no date), a hall, free seats and a price
    page.locator(f"#days button[data-day='{second}']").click()
    expect(page.locator(f"#days button[data-day='{second}']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#movies .showtime")).to_have_count(sum(len(m["screenings"]) for m in day_two))
    chip = page.locator("#movies .showtime").first
    expect(chip.locator(".time")).to_have_text(re.compile(r"^\d{2}:\d{2}$"))
    expect(chip.locator(".hall")).to_have_text(re.compile("^Hall "))
    expect(chip.locator(".price")).to_contain_text("11.50")
    # a title search, then a genre: only what matches stays
    page.get_by_label("Search titles").fill("arri")
    expect(page.locator("#movies article")).to_have_count(1)
    expect(page.locator("#movies article h3")).to_have_text("Arrival")
    page.get_by_label("Search titles").fill("")
    page.get_by_label("Genre", exact=True).select_option("family")
    expect(page.locator("#movies article h3")).to_have_text(["Paddington 2"])
    page.get_by_label("Genre", exact=True).select_option("")
    expect(page.locator("#movies article")).to_have_count(len(day_two))
    # the movie page: details, every showtime by day, reviews; the address says which movie
    page.get_by_role("link", name="Arrival").click()
    expect(page).to_have_url(re.compile("#movie="))
    expect(page.get_by_role("heading", level=2, name="Arrival")).to_be_visible()
    expect(page.locator("#movie-view-description")).to_contain_text("linguist")
    expect(page.locator("#movie-view-times .day-group")).to_have_count(2)
    expect(page.locator("#board")).to_be_hidden()
    shot(page, "06-movie-page")
    # a showtime opens its seat map, for a visitor too (seats are public; paying needs a sign-in)
    page.locator("#movie-view-times .showtime").first.click()
    expect(page).to_have_url(re.compile("#screening="))
    expect(page.get_by_role("heading", name="Choose your seats")).to_be_visible()
    expect(page.locator("#booking-what")).to_contain_text("Arrival")
    address = page.url
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#booking")).to_be_hidden()
    # the seat map by its address alone, in a fresh page
    fresh = page.context.new_page()
    fresh.goto(address)
    expect(fresh.get_by_role("heading", name="Choose your seats")).to_be_visible()
    expect(fresh.locator("#booking-what")).to_contain_text("Arrival")
    expect(fresh.locator("#seatmap .seat").first).to_be_visible()
    free_seat = fresh.locator("#seatmap .seat:not([disabled])").first
    free_seat.click()
    expect(free_seat).to_have_attribute("aria-pressed", "true")
    expect(fresh.get_by_role("button", name="Sign in to reserve")).to_be_enabled()
    fresh.get_by_role("button", name="Sign in to reserve").click()
    expect(fresh.get_by_role("alert")).to_contain_text("Sign in as a customer")
    fresh.close()
    page.goto(stack.base + f"/#movie={board['movies'][0]['movieId']}")
    expect(page.locator("#movie-view-title")).to_have_text(board["movies"][0]["title"])
    page.goto(stack.base + "/#screening=00000000-0000-4000-8000-000000000000")
    expect(page.get_by_role("alert")).to_contain_text("not in the catalog")
    expect(page.locator("#board")).to_be_visible()
    if os.environ.get("CINEMA_README_SCREENSHOT"):
        browser = page.context.browser
        assert browser is not None
        readme_shots(browser, stack)
    assert not [p for p in open_page.problems if "404" not in p], open_page.problems


def test_a_customer_reserves_on_the_seat_map_and_every_page_follows_live(
    open_page: Watched, browser: Browser, stack: Stack
) -> None:
    page = open_page.page
    movie_id, title, screening_id, total = first_showing(stack)
    free_before = stack.free_on_board(movie_id, screening_id)
    expect(free_cell(page, screening_id)).to_have_text(f"{free_before} of {total}")
    # a second browser (a visitor, not signed in) watches the same board
    visitor = Watched(browser.new_context(locale="en-GB", timezone_id="UTC"))
    visitor.page.goto(stack.base + "/")
    expect(visitor.page.locator("#live")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
    expect(free_cell(visitor.page, screening_id)).to_have_text(f"{free_before} of {total}")

    sign_in(page, edge.DEMO_CUSTOMER)
    expect(page.get_by_role("heading", name="My reservations")).to_be_visible()
    page.locator(f"#movies .showtime[data-screening-id='{screening_id}']").click()
    expect(page.get_by_role("heading", name="Choose your seats")).to_be_visible()
    seats = stack.free_seats(screening_id, 2)
    first, second = seats
    # one seat by mouse, one by keyboard (focus it, press Space)
    page.get_by_role("button", name=f"Seat {first}", exact=True).click()
    seat_two = page.get_by_role("button", name=f"Seat {second}", exact=True)
    seat_two.focus()
    page.keyboard.press("Space")
    expect(seat_two).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#chosen")).to_contain_text(f"Chosen: {', '.join(sorted(seats))}; total")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2035")
    page.get_by_label("CVC").fill("123")
    shot(page, "02-seat-map")
    page.get_by_role("button", name="Pay and reserve").click()

    expect(page.get_by_role("alert")).to_contain_text(f"Reserved {', '.join(sorted(seats))} for {title}")
    mine = page.locator("#mine-table tbody tr", has_text=", ".join(sorted(seats)))
    expect(mine.locator("td.state")).to_have_text("Confirmed")
    # the board follows without a reload, in this page and in the visitor's
    expect(free_cell(page, screening_id)).to_have_text(f"{free_before - 2} of {total}", timeout=LIVE_TIMEOUT_MS)
    expect(free_cell(visitor.page, screening_id)).to_have_text(f"{free_before - 2} of {total}", timeout=LIVE_TIMEOUT_MS)
    shot(page, "03-reserved")

    # another client (REST) reserves: both pages follow
    other = stack.reserve(stack.token(edge.DEMO_CUSTOMER), screening_id, stack.free_seats(screening_id, 3))
    expect(free_cell(page, screening_id)).to_have_text(f"{free_before - 5} of {total}", timeout=LIVE_TIMEOUT_MS)
    expect(free_cell(visitor.page, screening_id)).to_have_text(f"{free_before - 5} of {total}", timeout=LIVE_TIMEOUT_MS)
    # ... and the customer's list shows that reservation too (same customer, other client)
    expect(page.locator(f"#mine-table tr[data-reservation-id='{other['id']}'] td.state")).to_have_text(
        "Confirmed", timeout=LIVE_TIMEOUT_MS
    )

    page.get_by_role("button", name=f"Cancel reservation of {title}, seats {' '.join(sorted(seats))}").click()
    expect(page.get_by_role("alert")).to_contain_text("Cancelled your reservation")
    expect(mine.locator("td.state")).to_have_text("Cancelled")
    expect(free_cell(page, screening_id)).to_have_text(f"{free_before - 3} of {total}", timeout=LIVE_TIMEOUT_MS)
    expect(free_cell(visitor.page, screening_id)).to_have_text(f"{free_before - 3} of {total}", timeout=LIVE_TIMEOUT_MS)
    shot(page, "04-cancelled")
    if os.environ.get("CINEMA_README_SCREENSHOT"):
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(README_SHOT))
    assert not open_page.problems, open_page.problems
    assert not visitor.problems, visitor.problems
    visitor.context.close()


def test_a_manager_registers_a_movie_and_schedules_a_screening(open_page: Watched, stack: Stack) -> None:
    page = open_page.page
    sign_in(page, edge.DEMO_MANAGER)
    expect(page.get_by_role("heading", name="Manage the catalog")).to_be_visible()
    page.get_by_role("button", name="All days").click()  # the new screening is three days ahead
    expect(page.get_by_role("button", name="All days")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#mine")).to_be_hidden()  # the demo manager is no customer
    title = f"The Browser Test {int(time.time())}"
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_label("Running time (minutes)", exact=True).fill("97")
    page.get_by_label("Genres (comma-separated)", exact=True).fill("Documentary, Drama")
    page.get_by_role("button", name="Register movie").click()
    expect(page.get_by_role("alert")).to_contain_text(f'Registered "{title}"')
    # the form then offers the new movie (once the catalog list is refetched: wait for it, the
    # select holds another movie's id until then)
    expect(page.get_by_label("Movie", exact=True).locator("option:checked")).to_have_text(title)
    expect(page.get_by_label("Movie", exact=True)).to_have_value(re.compile("^[0-9a-f-]{36}$"))

    starts = (datetime.now() + timedelta(days=3)).replace(hour=21, minute=15, second=0, microsecond=0)
    page.get_by_label("Hall", exact=True).fill("7")
    page.get_by_label("Starts at (your local time)", exact=True).fill(starts.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Rows", exact=True).fill("5")
    page.get_by_label("Seats per row", exact=True).fill("10")
    page.get_by_label("Price per seat", exact=True).fill("9.50")
    page.get_by_role("button", name="Schedule screening").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Scheduled {title} in hall 7")
    # the new movie joins the board by itself (the change event names a movie the page did not know)
    card = page.locator("article", has=page.get_by_role("heading", name=title))
    expect(card).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(card.locator(".free")).to_have_text("50 of 50")
    expect(card).to_contain_text("documentary, drama · 97 min")
    shot(page, "05-manager")
    assert not open_page.problems, open_page.problems


def test_accessibility_smoke(open_page: Watched) -> None:
    page = open_page.page
    expect(page.get_by_role("banner")).to_be_visible()
    expect(page.get_by_role("main")).to_be_visible()
    expect(page.get_by_role("heading", level=1, name="Cinema")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
               .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
               .map(e => e.id || e.name || e.outerHTML)"""
    )
    assert unlabelled == [], f"inputs without a label: {unlabelled}"
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button, a')]
               .filter(e => !(e.textContent.trim() || e.getAttribute('aria-label')))
               .map(e => e.outerHTML)"""
    )
    assert nameless == [], f"buttons or links without a name: {nameless}"
    # every screening's booking button is reachable by its role and a name that says which one
    booking = page.get_by_role("button", name=re.compile(r"^Choose seats for .+, .+, \d{2}:\d{2} Hall .+ free .+$"))
    assert booking.count() >= 3  # the first day's demo screenings
    # the keyboard reaches the sign-in form from the top: skip link first, then the form
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the board")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Username")).to_be_focused()
    # the live region and the alert are announced to screen readers
    expect(page.locator("#live")).to_have_attribute("role", "status")
    expect(page.locator("#message")).to_have_attribute("role", "alert")
    assert not open_page.problems, open_page.problems


def test_the_page_is_one_public_path_and_the_rest_of_the_web_service_is_not(stack: Stack) -> None:
    web = f"http://127.0.0.1:{stack.port('CINEMA_WEB_PORT')}"
    page = httpx.get(stack.base + "/", timeout=10)  # through the ingress, no token
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp and "connect-src 'self'" in csp
    assert "<script src" not in page.text and 'rel="stylesheet"' not in page.text  # one document
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing from elsewhere
    # /healthz and /metrics are the web service's own, not routed at the ingress (404, as any
    # unknown path: a google.rpc.Status body, with or without a token)
    for path in ("/metrics", "/healthz"):
        hidden = httpx.get(stack.base + path, timeout=10)
        assert hidden.status_code == 404 and hidden.json()["code"] == 5, hidden.text
    health = httpx.get(web + "/healthz", timeout=10).json()
    assert health["status"] == "serving" and health["live"] is True
    assert "web_streams_open" in httpx.get(web + "/metrics", timeout=10).text


def test_live_updates_through_the_ingress_and_a_reconnect_gets_what_it_missed(stack: Stack) -> None:
    movie_id, _, screening_id, _ = first_showing(stack)
    token = stack.token(edge.DEMO_CUSTOMER)
    headers = {"Accept": "text/event-stream"}

    def first_change_of_our_movie(last_event_id: str) -> tuple[dict[str, str], str]:
        """Reconnect with `last_event_id`; the first change of our screening and movie, and its id."""
        event, last_id = "", ""
        with httpx.stream("GET", stack.base + "/", headers={**headers, "Last-Event-ID": last_event_id}) as reply:
            assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
            for line in reply.iter_lines():
                if line.startswith("id: "):
                    last_id = line[4:]
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "change":
                    data = json.loads(line[6:])
                    if (data["movie_id"], data["screening_id"]) == (movie_id, screening_id):
                        return data, last_id
        raise AssertionError("the stream ended without the change")

    # a page saw the stream's start, then went away ...
    with httpx.stream("GET", stack.base + "/", headers=headers, timeout=30) as reply:
        first = next(line for line in reply.iter_lines() if line.startswith("id: "))[4:]
    free_before = stack.free_on_board(movie_id, screening_id)
    stack.reserve(token, screening_id, stack.free_seats(screening_id, 1))
    eventually("the reservation on the board", lambda: stack.free_on_board(movie_id, screening_id) < free_before)
    # ... and reconnecting with the id it last saw, it gets the change it missed at once
    started = time.monotonic()
    _, last = first_change_of_our_movie(first)
    assert time.monotonic() - started < 5 and last != first
