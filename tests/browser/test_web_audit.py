"""The web screen audited, not assumed: axe-core on every page and state, horizontal overflow at
phone, tablet and desktop widths, page weight and request budgets, and Lighthouse's scores.

Playwright drives Debian's Chromium (as in test_web_screen.py) against the whole system in a
scratch folder, through its one address (the ingress). The audit tools are npm packages pinned by
scripts/audit/package-lock.json and installed by scripts/bootstrap into .tools/node:
- axe-core 4.14: its axe.min.js is evaluated in the page (over the DevTools protocol, so the
  page's Content-Security-Policy stays as it is); 0 serious or critical violations on the board
  (signed out, signed in as a customer with reservations, at 360 px), a movie page, the seat map
  (a visitor's, and a customer's with a seat chosen), an error shown (a failed sign-in), the
  manager's forms, and every other page the web service serves (found from its routes, so a new
  page is audited without anybody remembering to);
- overflow: at 360, 768 and 1280 px every visible element of the board, a movie page and the seat
  map of a 300-seat hall (with a long title and a long hall name) is walked; an element that
  escapes its container or the viewport, or whose content is wider than its box without
  scrolling (cut off or spilling), fails. A container with `overflow-x: auto|scroll` may scroll
  its content (the seat map on a phone); a `text-overflow: ellipsis` truncation is allowed;
- budgets: what the board and the seat map transfer and how many requests they make (the live
  stream not counted);
- Lighthouse 12.2.3 (scripts/audit/lighthouse.py, what `make audit` runs) on the board and the
  seat map: performance, accessibility and best practices at least 95.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from mesh import policy
from scripts.audit import lighthouse
from scripts.stack import edge
from tests.browser.stack import REPO, Stack, eventually, scratch_stack
from tests.browser.test_web_screen import LIVE_TIMEOUT_MS, sign_in

pytestmark = pytest.mark.integration

AXE = REPO / ".tools" / "node" / "node_modules" / "axe-core" / "axe.min.js"
WEB_ROUTES = REPO / "services" / "web" / "entrypoints"
NOT_PAGES = {"/healthz", "/metrics"}  # the web service's own, answered as JSON or text
FAILING_IMPACTS = ("serious", "critical")
WIDTHS = (360, 768, 1280)
SLACK_PX = 1  # sub-pixel rounding
QUIET_MS = 400  # no request of the page in flight for this long: it has settled

# Budgets: a first visit (empty cache) of each page, through the ingress, until it has settled.
# The page is one document with its style and script inlined, then the API reads of the view.
BUDGETS = {
    "board": (150_000, 10),  # bytes transferred (headers and bodies), requests (the live stream not counted)
    "seat map": (150_000, 10),
}

# A movie that stresses the layout: a long title, a long hall name, a 300-seat hall (15 x 20).
LONG_TITLE = "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (Restored Director's Cut)"
LONG_HALL = "Auditorium {n}, Dolby Atmos (east wing)"  # n: a free hall whatever ran before
BIG_HALL = (15, 20)


@dataclass(frozen=True)
class Showing:
    movie_id: str
    title: str
    screening_id: str  # of the 300-seat hall, with two seats taken by the demo customer
    reserved_seats: tuple[str, ...]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with scratch_stack("audit") as running:
        yield running


@pytest.fixture(scope="module")
def axe_source() -> str:
    assert AXE.exists(), f"{AXE} is missing: run scripts/bootstrap (it installs the audit tools with npm ci)"
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def showing(stack: Stack) -> Showing:
    """The long-titled movie in its 300-seat hall, on the board, with a reservation of the customer."""
    manager = stack.bearer(edge.DEMO_MANAGER)
    movie = httpx.post(
        f"{stack.base}/v1/movies",
        headers=manager,
        json={
            "title": LONG_TITLE,
            "durationMinutes": 95,
            "genres": ["comedy", "war", "satire"],
            "description": "A general goes mad and orders a nuclear strike; the war room tries to stop it. " * 3,
        },
        timeout=30,
    )
    assert movie.status_code == 200, movie.text
    movie_id = movie.json()["movie"]["id"]
    starts = (datetime.now(UTC) + timedelta(days=1)).replace(hour=20, minute=30, second=0, microsecond=0)
    screening = httpx.post(
        f"{stack.base}/v1/movies/{movie_id}/screenings",
        headers=manager,
        json={
            "hall": LONG_HALL.format(n=secrets.randbelow(900) + 100),
            "startTime": starts.isoformat().replace("+00:00", "Z"),
            "seatMap": {"rows": BIG_HALL[0], "seatsPerRow": BIG_HALL[1]},
            "price": {"minorUnits": 1250, "currencyCode": "EUR"},
        },
        timeout=30,
    )
    assert screening.status_code == 200, screening.text
    screening_id = screening.json()["screening"]["id"]
    eventually(
        "the 300-seat screening on the board",
        lambda: any(s["screeningId"] == screening_id for s in stack_board_screenings(stack, movie_id)),
    )
    seats = ("A1", "A2")
    stack.reserve(stack.token(edge.DEMO_CUSTOMER), screening_id, list(seats))
    return Showing(movie_id, LONG_TITLE, screening_id, seats)


def stack_board_screenings(stack: Stack, movie_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{stack.base}/v1/board/movies/{movie_id}", timeout=30)
    return list(reply.json().get("movie", {}).get("screenings", [])) if reply.status_code == 200 else []


# --- a page, settled ---------------------------------------------------------------------------------


class Settling:
    """A page and the requests it has in flight (the live stream aside), to wait until it settles."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page = context.new_page()
        self.pending: set[Request] = set()
        self.last_change = time.monotonic()
        self.page.on("request", self._started)
        self.page.on("requestfinished", self._ended)
        self.page.on("requestfailed", self._ended)

    def _started(self, request: Request) -> None:
        if request.resource_type != "eventsource":
            self.pending.add(request)
            self.last_change = time.monotonic()

    def _ended(self, request: Request) -> None:
        self.pending.discard(request)
        self.last_change = time.monotonic()

    def settle(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(100)  # lets Playwright deliver the request events
            if not self.pending and time.monotonic() - self.last_change >= QUIET_MS / 1000:
                # and the layout of what the last answers rendered
                self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                return
        raise AssertionError(f"the page did not settle within {timeout:.0f} s: {[r.url for r in self.pending]}")

    def goto(self, url: str) -> None:
        self.page.goto(url)
        self.settle()


@pytest.fixture
def settling(browser: Browser) -> Iterator[Settling]:
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 900})
    yield Settling(context)
    context.close()


def open_board(tab: Settling, stack: Stack) -> None:
    tab.page.goto(stack.base + "/")
    expect(tab.page.locator("#live")).to_have_text("Live", timeout=LIVE_TIMEOUT_MS)
    first = stack.get("/v1/board")["movies"][0]["title"]
    expect(tab.page.get_by_role("heading", name=first, exact=True).first).to_be_visible()
    tab.settle()


def open_seat_map(tab: Settling, stack: Stack, screening_id: str) -> None:
    """The seat map from its address (`/#screening=<id>`), the URL state Lighthouse audits too."""
    tab.page.goto(f"{stack.base}/#screening={screening_id}")
    seats = tab.page.get_by_role("button", name=re.compile(r"^Seat [A-Z][0-9]+"))
    expect(seats.first, "the page does not open the seat map from its address #screening=<id>").to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    tab.settle()


def open_movie(tab: Settling, stack: Stack, showing: Showing) -> None:
    """A movie's page from its address (`/#movie=<id>`): the board gives way to it."""
    tab.page.goto(f"{stack.base}/#movie={showing.movie_id}")
    expect(tab.page.locator("#board"), "the page does not open a movie page from #movie=<id>").to_be_hidden(
        timeout=LIVE_TIMEOUT_MS
    )
    expect(tab.page.get_by_role("heading", name=showing.title, exact=True)).to_be_visible()
    tab.settle()


def choose_a_seat(tab: Settling, stack: Stack, screening_id: str) -> None:
    seat = stack.free_seats(screening_id, 1)[0]
    button = tab.page.get_by_role("button", name=f"Seat {seat}", exact=True)
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    tab.settle()


def signed_in(tab: Settling, stack: Stack, user: tuple[str, str]) -> None:
    """Signed in on the board at the desktop width (a phone layout may fold the form away); the
    session stays in the tab for whatever width or view comes next."""
    size = tab.page.viewport_size
    tab.page.set_viewport_size({"width": 1280, "height": 900})
    open_board(tab, stack)
    sign_in(tab.page, user)
    tab.settle()
    if size:
        tab.page.set_viewport_size(size)


# --- axe-core ----------------------------------------------------------------------------------------


def axe_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # over the DevTools protocol: the page's CSP does not apply to it
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def readable(violations: list[dict[str, Any]]) -> str:
    lines = []
    order = {"critical": 0, "serious": 1, "moderate": 2, "minor": 3}
    for v in sorted(violations, key=lambda v: order.get(v["impact"], 4)):
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl'].split('?')[0]})")
        for node in v["nodes"][:8]:
            summary = " ".join((node.get("failureSummary") or "").split())[:300]
            lines.append(f"    {' '.join(map(str, node['target']))}: {summary}")
            lines.append(f"      {node['html'][:160]}")
        if len(v["nodes"]) > 8:
            lines.append(f"    ... and {len(v['nodes']) - 8} more elements")
    return "\n".join(lines)


def assert_accessible(tab: Settling, axe_source: str, state: str) -> None:
    violations = axe_violations(tab.page, axe_source)
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    others = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
    if others:
        print(f"\naxe, {state}: minor or moderate (not failing):\n{readable(others)}")
    assert not failing, f"axe-core, {state}: {len(failing)} serious or critical violations\n{readable(failing)}"


def test_axe_the_board_signed_out(settling: Settling, stack: Stack, axe_source: str) -> None:
    open_board(settling, stack)
    assert_accessible(settling, axe_source, "the board, signed out, 1280 px")


def test_axe_the_board_on_a_phone(settling: Settling, stack: Stack, axe_source: str) -> None:
    settling.page.set_viewport_size({"width": 360, "height": 780})
    open_board(settling, stack)
    assert_accessible(settling, axe_source, "the board, signed out, 360 px")


def test_axe_a_movie_page(settling: Settling, stack: Stack, showing: Showing, axe_source: str) -> None:
    open_movie(settling, stack, showing)
    assert_accessible(settling, axe_source, "a movie page (#movie=<id>), signed out")


def test_axe_the_seat_map_of_a_visitor(settling: Settling, stack: Stack, showing: Showing, axe_source: str) -> None:
    open_seat_map(settling, stack, showing.screening_id)
    assert_accessible(settling, axe_source, "the seat map (#screening=<id>), signed out")


def test_axe_the_seat_map_with_a_seat_chosen(
    settling: Settling, stack: Stack, showing: Showing, axe_source: str
) -> None:
    signed_in(settling, stack, edge.DEMO_CUSTOMER)
    open_seat_map(settling, stack, showing.screening_id)
    choose_a_seat(settling, stack, showing.screening_id)
    assert_accessible(settling, axe_source, "the seat map, signed in as a customer, a seat chosen")


def test_axe_a_customer_and_their_reservations(
    settling: Settling, stack: Stack, showing: Showing, axe_source: str
) -> None:
    signed_in(settling, stack, edge.DEMO_CUSTOMER)
    expect(settling.page.get_by_role("heading", name="My reservations")).to_be_visible()
    expect(settling.page.get_by_role("row").filter(has_text=", ".join(showing.reserved_seats)).first).to_be_visible(
        timeout=LIVE_TIMEOUT_MS
    )
    settling.settle()
    assert_accessible(settling, axe_source, "the board signed in as a customer, with my reservations")


def test_axe_an_error_shown(settling: Settling, stack: Stack, axe_source: str) -> None:
    open_board(settling, stack)
    page = settling.page
    page.get_by_label("Username").fill(edge.DEMO_CUSTOMER[0])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"\w"))
    settling.settle()
    assert_accessible(settling, axe_source, "a failed sign-in, its error shown")


def test_axe_the_managers_forms(settling: Settling, stack: Stack, axe_source: str) -> None:
    signed_in(settling, stack, edge.DEMO_MANAGER)
    # the catalog forms: on the board, or on a page of their own (the web service's other pages)
    for path in ["/", *(p for p in web_pages(stack) if p != "/")]:
        if path != "/":
            settling.goto(page_address(stack, path))
        if settling.page.get_by_role("button", name="Register movie").is_visible():
            assert_accessible(settling, axe_source, f"the manager's forms ({path}), signed in as a manager")
            return
    raise AssertionError("no page shows the manager's forms (a 'Register movie' button) to a signed-in manager")


def test_axe_finds_what_it_should_on_a_page_made_to_fail(browser: Browser, axe_source: str) -> None:
    """The audit itself: injected like this, axe-core names these violations (so the tests above can fail)."""
    context = browser.new_context(viewport={"width": 800, "height": 600})
    try:
        page = context.new_page()
        page.set_content(
            '<html lang="en"><head><title>bad</title></head><body><main>'
            '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
            '<p style="color:#777;background:#888">hardly readable</p><button></button></main></body></html>'
        )
        found = {v["id"]: v["impact"] for v in axe_violations(page, axe_source)}
        expected = {"image-alt": "critical", "button-name": "critical", "color-contrast": "serious"}
        assert expected.items() <= found.items(), found
    finally:
        context.close()


# --- every page the web service serves ---------------------------------------------------------------


def web_routes() -> list[str]:
    """The paths of the web service's HTTP routes, read from its entry points."""
    paths: set[str] = set()
    for source in WEB_ROUTES.glob("*.py"):
        paths.update(re.findall(r"""Route\(\s*["'](/[^"'{]*)["']""", source.read_text(encoding="utf-8")))
    assert "/" in paths, f"no route `/` found in {WEB_ROUTES}: the route pattern of this test is out of date"
    return sorted(paths - NOT_PAGES)


def web_pages(stack: Stack) -> list[str]:
    """Of the web service's routes, those that answer a browser with a page (text/html)."""
    web = f"http://127.0.0.1:{stack.port('CINEMA_WEB_PORT')}"
    pages = []
    for path in web_routes():
        reply = httpx.get(web + path, headers={"Accept": "text/html"}, timeout=30)
        if reply.status_code == 200 and reply.headers.get("content-type", "").startswith("text/html"):
            pages.append(path)
    return pages


def page_address(stack: Stack, path: str) -> str:
    """Through the ingress when it routes the page there, else at the web service's own port."""
    public = httpx.get(stack.base + path, headers={"Accept": "text/html"}, timeout=30)
    if public.status_code == 200 and public.headers.get("content-type", "").startswith("text/html"):
        return stack.base + path
    return f"http://127.0.0.1:{stack.port('CINEMA_WEB_PORT')}{path}"


def test_axe_every_page_of_the_web_service(settling: Settling, stack: Stack, axe_source: str) -> None:
    pages = web_pages(stack)
    assert "/" in pages, pages
    print(f"\nthe web service's pages: {pages}")
    failures = []
    for who in (None, edge.DEMO_MANAGER):
        if who:
            signed_in(settling, stack, who)
        for path in pages:
            address = page_address(stack, path)
            settling.goto(address)
            state = f"{path} ({address}), {'signed in as ' + who[0] if who else 'signed out'}"
            try:
                assert_accessible(settling, axe_source, state)
            except AssertionError as failure:
                failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


def test_every_link_of_the_pages_leads_to_an_audited_page_or_another_service(settling: Settling, stack: Stack) -> None:
    """The audit covers the web service's pages; a link elsewhere must be another service's path."""
    pages = web_pages(stack)
    others = [
        prefix
        for service in policy.load().services.values()
        if service.name != "web"
        for prefix in (*service.ingress_prefixes, *service.ingress_paths)
    ]
    signed_in(settling, stack, edge.DEMO_MANAGER)
    uncovered: set[str] = set()
    for path in pages:
        settling.goto(page_address(stack, path))
        hrefs: list[str] = settling.page.evaluate(
            "() => [...document.querySelectorAll('a[href]')].map(a => new URL(a.href))"
            ".filter(u => u.origin === location.origin).map(u => u.pathname)"
        )
        uncovered.update(h for h in hrefs if h not in pages and not any(h.startswith(p) for p in others))
    assert not uncovered, f"links to paths neither audited nor another service's: {sorted(uncovered)}"


# --- horizontal overflow -----------------------------------------------------------------------------

OVERFLOWS_JS = """
(slack) => {
  const vw = document.documentElement.clientWidth;
  const SCROLLS = new Set(['auto', 'scroll']);
  const FIELDS = new Set(['INPUT', 'TEXTAREA', 'SELECT']);
  const name = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && parts.length < 4; e = e.parentElement) {
      let part = e.tagName.toLowerCase();
      if (e.id) { parts.unshift(part + '#' + e.id); break; }
      const classes = [...e.classList].slice(0, 2);
      if (classes.length) part += '.' + classes.join('.');
      const twins = e.parentElement ? [...e.parentElement.children].filter(c => c.tagName === e.tagName) : [];
      if (twins.length > 1) part += `:nth-of-type(${twins.indexOf(e) + 1})`;
      parts.unshift(part);
    }
    return parts.join(' > ');
  };
  const words = (el) => (el.innerText || el.value || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  const scrolls = (el) => el !== document.documentElement && el !== document.body
    && SCROLLS.has(getComputedStyle(el).overflowX);
  const inScroller = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) if (scrolls(a)) return true;
    return false;
  };
  // clipped away on purpose (the screen-reader-only pattern: a 1 px box, clip or clip-path)
  const hiddenBoxes = new Map();
  const clippedAway = (el) => {
    if (!el || el === document.body) return false;
    if (hiddenBoxes.has(el)) return hiddenBoxes.get(el);
    const style = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    const own = style.clip.replace(/px|,| /g, '') === 'rect(0000)'
      || style.clipPath === 'inset(50%)'
      || ((r.width <= 1 || r.height <= 1) && style.overflowX !== 'visible');
    const hidden = own || clippedAway(el.parentElement);
    hiddenBoxes.set(el, hidden);
    return hidden;
  };
  const found = [];
  const beyond = new Set();
  const escaping = [];
  const spilling = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > vw + slack)
    found.push({kind: 'document wider than the viewport', where: 'html', by: doc.scrollWidth - vw,
                width: doc.scrollWidth, limit: vw, text: ''});
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;  // the svg's own box is checked
    const style = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    if (r.width <= 1 || r.height <= 1) continue;  // visually hidden (screen-reader text)
    if (r.right <= 0 || r.bottom <= 0) continue;  // moved off screen on purpose (a skip link)
    if (clippedAway(el)) continue;
    const scrolled = inScroller(el);
    if (!scrolled && (r.right > vw + slack || r.left < -slack)) {
      beyond.add(el);
      if (!beyond.has(el.parentElement))
        found.push({kind: 'beyond the viewport', where: name(el), by: Math.max(r.right - vw, -r.left),
                    width: r.width, limit: vw, text: words(el)});
    }
    const parent = el.parentElement;
    if (parent && parent !== document.body && !scrolls(parent) && getComputedStyle(parent).display !== 'contents') {
      const p = parent.getBoundingClientRect();
      const by = Math.max(r.right - p.right, p.left - r.left);
      if (by > slack) {
        escaping.push(el);
        found.push({kind: 'escapes its container ' + name(parent), where: name(el), by, width: r.width,
                    limit: p.width, text: words(el)});
      }
    }
    if (!scrolls(el) && !FIELDS.has(el.tagName) && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + slack) {
      const truncated = style.textOverflow === 'ellipsis' && style.overflowX !== 'visible';
      if (!truncated)
        spilling.push([el, {kind: style.overflowX === 'visible' ? 'content wider than its box'
                                  : `content cut off (overflow-x: ${style.overflowX})`,
                            where: name(el), by: el.scrollWidth - el.clientWidth, width: el.scrollWidth,
                            limit: el.clientWidth, text: words(el)}]);
    }
  }
  // a box whose content spills because a descendant escapes is that descendant's doing: named once
  return found.concat(spilling.filter(([el]) => !escaping.some(e => el.contains(e))).map(([, f]) => f));
}
"""


def overflow_report(found: list[dict[str, Any]], limit: int = 40) -> str:
    lines = [
        f"  {f['kind']}: {f['where']} by {f['by']:.0f} px ({f['width']:.0f} px wide, room for {f['limit']:.0f})"
        + (f" '{f['text']}'" if f["text"] else "")
        for f in found[:limit]
    ]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    return "\n".join(lines)


MADE_TO_OVERFLOW = """<!doctype html><html lang="en"><head><style>
body { margin: 0 } .box { width: 200px } .wide { width: 300px; height: 20px }
.scroll { width: 200px; overflow-x: auto } .line { width: 100px; overflow: hidden; white-space: nowrap }
.ellipsis { text-overflow: ellipsis }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0) }
.skip { position: absolute; left: -999px }
</style></head><body>
<div id="escaped" class="box"><div id="too-wide" class="wide"></div></div>
<div id="scrolls" class="scroll"><div class="wide"></div></div>
<p id="cut" class="line">A long line of text cut off without a sign</p>
<p id="truncated" class="line ellipsis">A long line of text that ends in an ellipsis</p>
<table class="sr"><tr><th>A header for screen readers</th><th>Another one, as wide</th></tr></table>
<a class="skip" href="#cut">Skip</a>
<div id="too-far" style="width: 400px; height: 10px"></div>
</body></html>"""


def test_the_overflow_walk_tells_escaping_from_scrolling(browser: Browser) -> None:
    """The walk itself, on a page made for it at 360 px: what escapes or is cut off is named, what
    scrolls in its own container, truncates with an ellipsis or is hidden for screen readers is not."""
    context = browser.new_context(viewport={"width": 360, "height": 600})
    try:
        page = context.new_page()
        page.set_content(MADE_TO_OVERFLOW)
        found: list[dict[str, Any]] = page.evaluate(OVERFLOWS_JS, SLACK_PX)
        named = {(f["where"], f["kind"].split(" ")[0], round(f["by"])) for f in found}
        assert named == {
            ("html", "document", 40),
            ("div#too-wide", "escapes", 100),
            ("p#cut", "content", round(found[[f["where"] for f in found].index("p#cut")]["by"])),
            ("div#too-far", "beyond", 40),
        }, overflow_report(found)
        assert next(f for f in found if f["where"] == "p#cut")["by"] > 50, overflow_report(found)
    finally:
        context.close()


def view_at(tab: Settling, stack: Stack, showing: Showing, view: str) -> None:
    if view == "board":
        open_board(tab, stack)
    elif view == "board, signed in":
        signed_in(tab, stack, edge.DEMO_CUSTOMER)
        expect(tab.page.get_by_role("row").filter(has_text=", ".join(showing.reserved_seats)).first).to_be_visible(
            timeout=LIVE_TIMEOUT_MS
        )
        tab.settle()
    elif view == "movie":
        open_movie(tab, stack, showing)
    elif view == "seat map":
        signed_in(tab, stack, edge.DEMO_CUSTOMER)
        open_seat_map(tab, stack, showing.screening_id)
        expect(tab.page.get_by_role("button", name=re.compile(r"^Seat [A-Z][0-9]+"))).to_have_count(
            BIG_HALL[0] * BIG_HALL[1]
        )
        choose_a_seat(tab, stack, showing.screening_id)
    else:
        raise AssertionError(view)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("view", ["board", "board, signed in", "movie", "seat map"])
def test_nothing_overflows_horizontally(
    browser: Browser, stack: Stack, showing: Showing, view: str, width: int
) -> None:
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": width, "height": 800})
    try:
        tab = Settling(context)
        view_at(tab, stack, showing, view)
        found: list[dict[str, Any]] = tab.page.evaluate(OVERFLOWS_JS, SLACK_PX)
        if found:
            shots = REPO / ".data" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            tab.page.screenshot(path=str(shots / f"overflow-{view.replace(', ', '-').replace(' ', '-')}-{width}.png"))
        assert not found, f"{view} at {width} px: {len(found)} horizontal overflows\n{overflow_report(found)}"
    finally:
        context.close()


# --- page weight and requests ------------------------------------------------------------------------


@dataclass
class Traffic:
    requests: dict[str, str]  # request id -> URL (the live stream and data: URLs not counted)
    transferred: dict[str, int]  # request id -> bytes on the wire (headers and body)

    def total(self) -> int:
        return sum(self.transferred.get(rid, 0) for rid in self.requests)


@pytest.mark.parametrize("page_name", list(BUDGETS))
def test_page_weight_and_request_budgets(browser: Browser, stack: Stack, showing: Showing, page_name: str) -> None:
    context = browser.new_context(locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 900})
    try:
        tab = Settling(context)
        traffic = Traffic({}, {})
        cdp = context.new_cdp_session(tab.page)

        def sent(event: dict[str, Any]) -> None:
            url = str(event["request"]["url"])
            if event.get("type") != "EventSource" and not url.startswith("data:"):
                traffic.requests[event["requestId"]] = url

        cdp.on("Network.requestWillBeSent", sent)
        cdp.on(
            "Network.loadingFinished",
            lambda event: traffic.transferred.__setitem__(event["requestId"], int(event["encodedDataLength"])),
        )
        cdp.send("Network.enable")
        if page_name == "board":
            open_board(tab, stack)
        else:
            open_seat_map(tab, stack, showing.screening_id)
        max_bytes, max_requests = BUDGETS[page_name]
        listing = "\n".join(f"  {traffic.transferred.get(rid, 0):>8} B  {url}" for rid, url in traffic.requests.items())
        print(f"\n{page_name}: {len(traffic.requests)} requests, {traffic.total()} bytes transferred\n{listing}")
        assert traffic.total() <= max_bytes, f"{page_name}: {traffic.total()} bytes > {max_bytes}\n{listing}"
        assert len(traffic.requests) <= max_requests, f"{page_name}: {len(traffic.requests)} requests\n{listing}"
    finally:
        context.close()


# --- Lighthouse --------------------------------------------------------------------------------------


def test_lighthouse_scores_at_least_95(stack: Stack, showing: Showing) -> None:
    """What `make audit` runs (desktop preset, one run per page), on this module's stack."""
    out = REPO / ".data" / "audit" / "lighthouse"
    results, report = lighthouse.audit(stack.base, "desktop", lighthouse.MIN_SCORE, out)
    print("\n" + report)
    assert len(results) == 2 and all(set(r.scores) == set(lighthouse.CATEGORIES) for r in results), report
    assert all(r.below(101) == r.scores for r in results), "the verdict must follow the scores"
    failing = {r.page.name: r.below(lighthouse.MIN_SCORE) for r in results if r.below(lighthouse.MIN_SCORE)}
    assert not failing, f"Lighthouse below {lighthouse.MIN_SCORE}: {failing}\n{report}"
