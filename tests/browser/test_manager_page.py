"""The manager's page (`/manager`, issue 16) in a real browser: Playwright driving Debian's Chromium
against the whole system in a scratch folder, through its one address (the ingress).

A visitor and a customer are told the page is for managers; a manager picks a movie and sees the
sales of each screening and their total (the same numbers as the REST API), a chart of sales over
time (plain SVG), and who booked a screening, filtered by state; a booking made meanwhile shows
after a refresh. No script error and no CSP violation on the way. Screenshot:
.data/screenshots/manager.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from scripts.stack import edge
from tests.browser.stack import REPO, Stack, scratch_stack

pytestmark = pytest.mark.integration

SHOTS = REPO / ".data" / "screenshots"
SETTLE_MS = 30_000  # an event's way to the read model on a busy machine: outbox -> NATS -> viewpage


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("manager-page") as running:
        yield running


def sign_in(page: Page, user: tuple[str, str]) -> None:
    page.get_by_label("Username").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).to_be_visible()


def movie_sales(stack: Stack, token: str, movie_id: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{stack.base}/v1/sales/movies/{movie_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def test_a_manager_sees_the_sales_the_chart_and_who_booked(browser: Browser, stack: Stack) -> None:
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", console)
    page.goto(stack.base + "/manager")
    expect(page.locator("#not-manager")).to_be_visible()
    expect(page.locator("#sales")).to_be_hidden()

    sign_in(page, edge.DEMO_CUSTOMER)  # a customer: still not for them
    expect(page.locator("#not-manager")).to_be_visible()
    expect(page.locator("#sales")).to_be_hidden()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, edge.DEMO_MANAGER)
    expect(page.get_by_role("heading", name="Sales", exact=True)).to_be_visible()
    manager = stack.token(edge.DEMO_MANAGER)
    movie = next(m for m in stack.get("/v1/movies?page_size=100")["movies"] if m["title"] == "Arrival")
    screening_id = stack.get(f"/v1/movies/{movie['id']}/screenings")["screenings"][0]["id"]
    before = movie_sales(stack, manager, movie["id"])

    page.get_by_label("Movie").select_option(label="Arrival")
    rows = page.locator("#sales-table tbody tr")
    expect(rows).to_have_count(len(before["screenings"]))
    expect(page.locator("#sales-table tfoot")).to_contain_text("Total")

    # A booking made meanwhile (by a customer, over REST) shows after a refresh.
    customer = stack.token(edge.DEMO_CUSTOMER)
    seats = stack.free_seats(screening_id, 2)
    booked = stack.reserve(customer, screening_id, seats)
    sold_before = next(
        int(s["sales"].get("seatsSold", 0)) for s in before["screenings"] if s["screeningId"] == screening_id
    )
    row = page.locator(f'#sales-table tbody tr[data-screening="{screening_id}"]')
    sold_cell = row.locator("td").nth(0)

    def refreshed_until_sold() -> None:
        page.get_by_role("button", name="Refresh").click()
        expect(sold_cell).to_have_text(str(sold_before + 2), timeout=2_000)

    for _ in range(SETTLE_MS // 2_000):
        try:
            refreshed_until_sold()
            break
        except AssertionError:
            continue
    else:
        refreshed_until_sold()
    after = movie_sales(stack, manager, movie["id"])
    total = after["sales"]
    footer = page.locator("#sales-table tfoot td")
    expect(footer.nth(1)).to_have_text(str(total.get("seatsSold", 0)))
    expect(footer.nth(2)).to_have_text(str(total.get("seatsFree", 0)))
    shown = after["screenings"]
    expect(rows).to_have_count(len(shown))

    # The chart: a bar per hour with sales, a line of the net revenue, described for screen readers.
    chart = page.locator("#chart svg")
    expect(chart).to_be_visible()
    assert chart.locator("rect.bar-sold").count() == len(total["timeline"]) >= 1
    expect(chart.locator("polyline.line-net")).to_have_count(1)
    assert chart.locator("circle.dot-net").count() == len(total["timeline"])
    assert "seats sold" in (chart.get_attribute("aria-label") or "")

    # Who booked: the screening's reservations, then only the confirmed ones.
    row.get_by_role("button", name="Reservations").click()
    bookings = page.locator("#bookings-table tbody")
    expect(page.locator("#bookings")).to_be_visible()
    expect(bookings.locator(f'tr[data-reservation="{booked["id"]}"]')).to_contain_text(" ".join(booked["seats"]))
    page.get_by_label("State").select_option(label="Cancelled")
    expect(bookings.locator(f'tr[data-reservation="{booked["id"]}"]')).to_have_count(0)
    page.get_by_label("State").select_option(label="Confirmed")
    expect(bookings.locator(f'tr[data-reservation="{booked["id"]}"]')).to_contain_text("confirmed")

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "manager.png"), full_page=True)
    assert not problems, problems
    context.close()
