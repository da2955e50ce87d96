"""The mesh page (`/mesh`, managers) in a real browser: Playwright driving Debian's Chromium against
the whole system in a scratch folder (every trace recorded), through its one address, the ingress.

- A visitor is asked to sign in; a customer's token is refused (403), a manager sees the page.
- After bookings the graph shows the edges they took with non-zero rates (ingress -> gateway ->
  reservation -> payment), the event flow lists the streams and durable consumers.
- With payment SIGSTOPped its node turns red and the reservation -> payment edge shows failures
  or ejections within seconds; after SIGCONT the node is healthy again.
- A reservation's trace renders as a waterfall with the consumers of its events under it.

Screenshots go to .data/screenshots/ (CINEMA_README_SCREENSHOT=1 also refreshes docs/images/mesh.png).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from scripts.stack import edge
from tests.browser.stack import CARD, REPO, Stack, eventually
from tests.support.scratch_stack import scratch_stack

pytestmark = pytest.mark.integration

SHOTS = REPO / ".data" / "screenshots"
README_SHOT = REPO / "docs" / "images" / "mesh.png"
SEEN_MS = 30_000  # a few sampling rounds (3 s each) on a busy machine


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("mesh", Stack, {"CINEMA_TRACE_SAMPLE_RATIO": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def mesh_page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """One manager's mesh page, open for the whole module (as a person would keep it open)."""
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(stack.base + "/mesh")
    expect(page.get_by_role("heading", name="Managers only")).to_be_visible()
    page.get_by_label("Username").fill(edge.DEMO_MANAGER[0])
    page.get_by_label("Password").fill(edge.DEMO_MANAGER[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Service graph")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("sampled", timeout=SEEN_MS)
    yield page
    assert not problems, problems
    context.close()


class Bookings:
    """Customers booking one seat after another in the background (REST through the ingress)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.token = stack.token(edge.DEMO_CUSTOMER)
        movie = stack.get("/v1/board")["movies"][0]
        self.screening = movie["screenings"][0]["screeningId"]
        self.made: list[str] = []
        self.answers: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def book_one(self) -> str | None:
        seat = self.stack.free_seats(self.screening, 1)
        reply = httpx.post(
            f"{self.stack.base}/v1/reservations",
            headers={"Authorization": f"Bearer {self.token}"},
            json={"screeningId": self.screening, "seats": seat, "requestId": str(uuid.uuid4()), "card": CARD},
            timeout=30,
        )
        self.answers.append(reply.status_code)
        if reply.status_code == 200:
            reservation_id = str(reply.json()["reservation"]["id"])
            self.made.append(reservation_id)
            return reservation_id
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError, AssertionError):  # refusals are part of the test
                self.book_one()
            self._stop.wait(0.3)

    def __enter__(self) -> Bookings:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def edge_of(page: Page, source: str, target: str) -> Locator:
    return page.locator(f"#graph g.edge[data-source='{source}'][data-target='{target}']")


def node_of(page: Page, name: str) -> Locator:
    return page.locator(f"#graph g.node[data-node='{name}']")


def number(locator: Locator, attribute: str) -> float:
    if locator.count() == 0:
        return 0.0
    value = locator.first.get_attribute(attribute) or ""
    return float(value) if value else 0.0


def carries(page: Page, source: str, target: str) -> Callable[[], bool]:
    return lambda: number(edge_of(page, source, target), "data-rps") > 0


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_data_is_for_managers_only(stack: Stack) -> None:
    customer = stack.token(edge.DEMO_CUSTOMER)
    for path in ("/mesh/state", "/mesh/trace?reservation=r-1", "/mesh/recent"):
        assert httpx.get(f"{stack.base}{path}", timeout=30).status_code == 401  # the ingress asks for a token
        refused = httpx.get(f"{stack.base}{path}", headers={"Authorization": f"Bearer {customer}"}, timeout=30)
        assert refused.status_code == 403, refused.text
    page = httpx.get(f"{stack.base}/mesh", timeout=30)
    assert page.status_code == 200 and "the mesh" in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]


def test_after_bookings_the_graph_shows_the_edges_they_took(mesh_page: Page, stack: Stack) -> None:
    page = mesh_page
    with Bookings(stack) as bookings:
        for source, target in (
            ("client", "ingress"),
            ("ingress", "gateway"),
            ("gateway", "reservation"),
            ("reservation", "payment"),
        ):
            eventually(f"{source} -> {target} carries traffic", carries(page, source, target), 45)
        # Envoy computes its quantiles when it flushes its statistics (every 5 s)
        call = edge_of(page, "gateway", "reservation")
        eventually("the gateway -> reservation edge has its p99", lambda: number(call, "data-p99") > 0, 45)
        expect(node_of(page, "reservation")).to_have_attribute("data-health", "healthy")
        expect(node_of(page, "payment")).to_have_attribute("data-health", "healthy")
    assert bookings.made, bookings.answers
    # the event flow: streams, and the durable consumers of the services with their backlog
    expect(page.locator("#streams tbody tr").first).to_be_visible()
    expect(page.locator("#consumers tbody")).to_contain_text("notification")
    expect(page.locator("#outboxes tbody")).to_contain_text("reservation")
    expect(page.locator("#dead-letters")).to_contain_text("Dead letters")
    # and what the page costs
    expect(page.locator("#cost")).to_contain_text("One sampler in the web service")
    path = shot(page, "mesh-01-traffic")
    if os.environ.get("CINEMA_README_SCREENSHOT"):
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SHOT), full_page=False)
    assert path.exists()


def test_a_stopped_payment_turns_red_and_recovers(mesh_page: Page, stack: Stack) -> None:
    page = mesh_page
    payment = stack.pid("payment")
    os.kill(payment, signal.SIGSTOP)
    try:
        with Bookings(stack):
            expect(node_of(page, "payment")).to_have_attribute("data-health", "failure", timeout=SEEN_MS)
            call = edge_of(page, "reservation", "payment")
            eventually(
                "the reservation -> payment edge shows failures or ejections",
                lambda: number(call, "data-errors") > 0 or number(call, "data-ejections") > 0,
                SEEN_MS / 1000,
            )
            shot(page, "mesh-02-payment-stopped")
    finally:
        os.kill(payment, signal.SIGCONT)
    started = time.monotonic()
    with Bookings(stack) as bookings:
        expect(node_of(page, "payment")).to_have_attribute("data-health", "healthy", timeout=90_000)
        eventually("reservations succeed again", lambda: len(bookings.made) > 0, 60)
    print(f"payment healthy again {time.monotonic() - started:.1f} s after SIGCONT")


def test_a_reservations_trace_renders_with_its_consumers_under_it(mesh_page: Page, stack: Stack) -> None:
    page = mesh_page
    reservation_id = Bookings(stack).book_one()
    assert reservation_id
    # the consumers handle its events within a second or two; Jaeger has every span (ratio 1)
    page.get_by_role("button", name="Recent reservations").click()
    expect(page.locator("#recent button").first).to_be_visible(timeout=SEEN_MS)
    rows = page.locator("#waterfall .span-row")

    def consumers_shown() -> bool:
        page.get_by_label("Reservation id").fill(reservation_id)
        page.get_by_role("button", name="Show its trace").click()
        # an answer: the trace, or "no trace" while the services' exporters have not sent it yet
        expect(page.locator("#trace-message")).not_to_have_text("Looking for its trace…", timeout=10_000)
        if not (page.locator("#trace-message").text_content() or "").startswith("Trace "):
            return False
        # every service's exporter sends its spans on its own schedule: wait for the whole trace
        shown = set(rows.evaluate_all("rows => rows.map(r => r.dataset.service)"))
        return {"reservation", "payment", "notification", "viewpage"} <= shown

    eventually("the trace with its consumers", consumers_shown, 60)
    services = set(rows.evaluate_all("rows => rows.map(r => r.dataset.service)"))
    assert {"reservation", "payment"} <= services, services
    first_consumer = page.locator("#waterfall .span-row[data-service='notification']").first
    assert int(first_consumer.get_attribute("data-depth") or 0) > 0  # under the span that wrote the event
    expect(page.locator("#trace-message")).to_contain_text("spans over")
    shot(page, "mesh-03-trace")
