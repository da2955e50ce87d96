"""A new customer through the real ingress, with no admin step: signs up (`POST /v1/accounts`),
gets a token, books; the session goes on with refresh tokens (rotating, revocable) and not the
password; a stranger guessing the password locks only their own address out. The same from the
`cinema` command and from the web screen in a real browser.

The whole system as `make up` runs it, in a scratch folder on free ports (tests/support/scratch_stack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.support.scratch_stack import CARD, ScratchStack, scratch_stack

pytestmark = pytest.mark.integration

CINEMA = Path(sys.executable).parent / "cinema"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "seats-by-the-aisle-please"


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    with scratch_stack("signup", ScratchStack) as running:
        yield running


def new_email() -> str:
    return f"film.fan.{uuid.uuid4().hex[:8]}@example.com"


def claims_of(token: str) -> dict[str, Any]:
    import base64

    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def token_form(stack: ScratchStack, form: dict[str, str], client: httpx.Client | None = None) -> httpx.Response:
    http = client or httpx.Client(timeout=30)
    return http.post(f"{stack.base}/oauth2/token", data=form)


def a_screening(stack: ScratchStack) -> str:
    movies = httpx.get(f"{stack.base}/v1/movies", timeout=30).json()["movies"]
    screenings = httpx.get(f"{stack.base}/v1/movies/{movies[0]['id']}/screenings", timeout=30).json()["screenings"]
    return str(screenings[0]["id"])


def free_seats(stack: ScratchStack, screening_id: str, count: int) -> list[str]:
    availability = httpx.get(f"{stack.base}/v1/screenings/{screening_id}/availability", timeout=30).json()
    taken = set(availability.get("takenSeats") or [])
    per_row = int(availability["seatMap"]["seatsPerRow"])
    free = [f"{r}{n}" for r in "HGFEDCBA" for n in range(per_row, 0, -1) if f"{r}{n}" not in taken]
    return free[:count]


def test_a_new_customer_signs_up_through_the_ingress_and_books(stack: ScratchStack) -> None:
    email = new_email()
    created = httpx.post(f"{stack.base}/v1/accounts", json={"email": email, "password": PASSWORD}, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["account"]["roles"] == ["customer"]
    signed = token_form(stack, {"grant_type": "password", "username": email, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    token = signed.json()["access_token"]
    assert claims_of(token)["email"] == email and claims_of(token)["roles"] == ["customer"]

    screening = a_screening(stack)
    seats = free_seats(stack, screening, 2)
    booked = httpx.post(
        f"{stack.base}/v1/reservations",
        headers={"Authorization": f"Bearer {token}"},
        json={"screeningId": screening, "seats": seats, "requestId": str(uuid.uuid4()), "card": CARD},
        timeout=30,
    )
    assert booked.status_code == 200, booked.text
    assert booked.json()["reservation"]["state"] == "RESERVATION_STATE_CONFIRMED"

    # the session goes on by the refresh token: the new access token lists the booking
    renewed = token_form(stack, {"grant_type": "refresh_token", "refresh_token": signed.json()["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    mine = httpx.get(
        f"{stack.base}/v1/reservations",
        headers={"Authorization": f"Bearer {renewed.json()['access_token']}"},
        timeout=30,
    )
    assert mine.status_code == 200, mine.text
    assert booked.json()["reservation"]["id"] in {r["id"] for r in mine.json().get("reservations", [])}
    # the spent one again: refused, and the whole sign-in with it; revoking at the edge is 200
    replay = token_form(stack, {"grant_type": "refresh_token", "refresh_token": signed.json()["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    newest = token_form(stack, {"grant_type": "refresh_token", "refresh_token": renewed.json()["refresh_token"]})
    assert newest.status_code == 400
    revoked = httpx.post(f"{stack.base}/oauth2/revoke", data={"token": renewed.json()["refresh_token"]}, timeout=30)
    assert revoked.status_code == 200, revoked.text


def test_sign_up_refusals_at_the_edge_are_google_rpc_status(stack: ScratchStack) -> None:
    email = new_email()
    first = httpx.post(f"{stack.base}/v1/accounts", json={"email": email, "password": PASSWORD}, timeout=30)
    assert first.status_code == 201, first.text
    taken = httpx.post(f"{stack.base}/v1/accounts", json={"email": email.upper(), "password": PASSWORD}, timeout=30)
    assert taken.status_code == 409 and taken.json()["code"] == 6, taken.text
    weak = httpx.post(f"{stack.base}/v1/accounts", json={"email": new_email(), "password": "short"}, timeout=30)
    assert weak.status_code == 400 and weak.json()["code"] == 3, weak.text
    assert "at least 12 characters" in weak.json()["message"]
    # only POST /v1/accounts is identity's: another method on it is refused as a Status too
    listed = httpx.get(f"{stack.base}/v1/accounts", timeout=30)
    assert listed.status_code in (404, 405) and isinstance(listed.json()["code"], int), listed.text


def test_a_stranger_locks_out_only_their_own_address(stack: ScratchStack) -> None:
    email = new_email()
    created = httpx.post(f"{stack.base}/v1/accounts", json={"email": email, "password": PASSWORD}, timeout=30)
    assert created.status_code == 201, created.text
    stranger = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30)
    owner = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=30)
    # a forged edge header does not help: Envoy writes the address it saw
    forged = {"x-envoy-external-address": "198.51.100.1", "X-Forwarded-For": "198.51.100.1"}
    wrong = {"grant_type": "password", "username": email, "password": "not-the-password-1"}
    right = {"grant_type": "password", "username": email, "password": PASSWORD}
    for _ in range(5):  # IDENTITY_LOCKOUT_THRESHOLD's default
        refused = stranger.post(f"{stack.base}/oauth2/token", data=wrong, headers=forged)
        assert refused.status_code == 400, refused.text
    locked = stranger.post(f"{stack.base}/oauth2/token", data=right)
    assert locked.status_code == 429, locked.text
    assert 1 <= int(locked.headers["retry-after"]) <= 30
    body = locked.json()
    assert body["code"] == 8 and body["error"] == "invalid_grant"
    assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in body["details"]), body
    # the account's owner, from another address, is not locked out
    assert owner.post(f"{stack.base}/oauth2/token", data=right).status_code == 200
    # nor is the stranger's address for another account
    other = new_email()
    assert httpx.post(f"{stack.base}/v1/accounts", json={"email": other, "password": PASSWORD}, timeout=30).is_success
    elsewhere = stranger.post(f"{stack.base}/oauth2/token", data={**right, "username": other})
    assert elsewhere.status_code == 200, elsewhere.text


def test_the_command_line_signs_up_and_renews_its_session(stack: ScratchStack, tmp_path: Path) -> None:
    env = {**os.environ, "CINEMA_URL": stack.base, "CINEMA_CONFIG_DIR": str(tmp_path), "COLUMNS": "160"}

    def cinema(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CINEMA), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"cinema {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    email = new_email()
    opened = cinema("signup", email, "--password-stdin", stdin=PASSWORD + "\n")
    assert f"account {email} opened" in opened.stdout and "renews itself" in opened.stdout
    saved_file = tmp_path / "session.json"
    saved = json.loads(saved_file.read_text())[stack.base]
    assert saved["refresh_token"] and PASSWORD not in saved_file.read_text()
    # the access token is about to end: the next command renews it with the refresh token
    saved["expires_at"] = time.time() + 20
    saved_file.write_text(json.dumps({stack.base: saved}))
    assert cinema("reservations", "--json").stdout.strip().startswith("[")
    renewed = json.loads(saved_file.read_text())[stack.base]
    assert renewed["token"] != saved["token"] and renewed["refresh_token"] != saved["refresh_token"]
    assert renewed["expires_at"] > time.time() + 600
    # logout revokes it at identity
    cinema("logout")
    refused = token_form(stack, {"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]})
    assert refused.status_code == 400, refused.text


def test_the_web_screen_signs_up_and_keeps_the_session_by_refresh_token(stack: ScratchStack) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/bootstrap (it installs Debian's chromium)"
    email = new_email()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(stack.base + "/")
            page.get_by_text("New here? Create an account").click()
            page.get_by_label("E-mail").fill(email)
            page.get_by_label("Choose a passphrase").fill("short")
            page.get_by_role("button", name="Create account").click()
            # the browser's own check (minlength) or the service's words: either way no account
            page.get_by_label("Choose a passphrase").fill(PASSWORD)
            page.get_by_role("button", name="Create account").click()
            expect(page.locator("#whoami")).to_be_visible(timeout=30_000)
            expect(page.locator("#who")).to_have_text(email)
            first = page.evaluate("sessionStorage.getItem('cinema.refresh')")
            assert first
            # the access token is gone (as when it ends): the page gets a new one by the refresh token
            page.evaluate("sessionStorage.removeItem('cinema.token')")
            page.reload()
            expect(page.locator("#whoami")).to_be_visible(timeout=30_000)
            assert page.evaluate("sessionStorage.getItem('cinema.refresh')") not in (None, first)
            # signing out revokes the session at identity
            latest = page.evaluate("sessionStorage.getItem('cinema.refresh')")
            page.get_by_role("button", name="Sign out").click()
            expect(page.locator("#signin")).to_be_visible()

            def refused() -> bool:
                reply = token_form(stack, {"grant_type": "refresh_token", "refresh_token": latest})
                return reply.status_code == 400

            deadline = time.monotonic() + 30
            while not refused():
                assert time.monotonic() < deadline, "the refresh token was not revoked at sign-out"
                time.sleep(0.3)
            assert not errors, errors
        finally:
            browser.close()
