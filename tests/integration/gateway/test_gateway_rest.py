"""REST/JSON through the gateway to real services: the gateway binary as a process in front of the
movie, review and viewpage services (real processes on FerretDB, Redis and NATS), with
reservation, payment and notification down. Checked over HTTP only, as a REST client would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from cinema.events.v1.envelope_pb2 import EventEnvelope
from scripts.stack.services import Identity
from services.kit.testing_tokens import LocalTokenIssuer
from tests.integration.gateway.conftest import Catalog, Gateway

pytestmark = pytest.mark.integration

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def bearer(identity: Identity, subject: str, role: str, **claims: Any) -> dict[str, str]:
    token = identity.issuer.mint(subject, roles={role}, ttl_s=3600, extra_claims=claims)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=15) as http:
        yield http


@pytest.fixture(scope="module")
def manager(identity: Identity) -> dict[str, str]:
    return bearer(identity, "manager-gw", "manager")


def assert_status_body(reply: httpx.Response, http_status: int, grpc_code: int) -> dict[str, Any]:
    """The reply is `http_status` with a google.rpc.Status JSON body of `grpc_code`."""
    assert reply.status_code == http_status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = reply.json()
    assert body["code"] == grpc_code, body
    assert isinstance(body["message"], str)
    assert isinstance(body["details"], list)
    return body


def create_movie(client: httpx.Client, manager: dict[str, str], title: str = "Metropolis") -> dict[str, Any]:
    reply = client.post(
        "/v1/movies",
        json={"title": title, "durationMinutes": 153, "genres": ["sci-fi"]},
        params={"requestId": str(uuid.uuid4())},
        headers=manager,
    )
    assert reply.status_code == 200, reply.text
    movie: dict[str, Any] = reply.json()["movie"]
    return movie


def test_public_list_of_movies_needs_no_token(client: httpx.Client) -> None:
    reply = client.get("/v1/movies", params={"pageSize": 10})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["movies"], list)
    assert "nextPageToken" in body  # unpopulated fields are emitted: a stable JSON shape


def test_manager_creates_a_movie_and_anyone_reads_it(client: httpx.Client, manager: dict[str, str]) -> None:
    movie = create_movie(client, manager, "Arrival")
    uuid.UUID(movie["id"])
    reply = client.get(f"/v1/movies/{movie['id']}")
    assert reply.status_code == 200, reply.text
    assert reply.json()["movie"]["title"] == "Arrival"
    listed = client.get("/v1/movies", params={"pageSize": 100}).json()["movies"]
    assert movie["id"] in {m["id"] for m in listed}


def test_no_token_is_401_with_a_bearer_challenge(client: httpx.Client) -> None:
    reply = client.post("/v1/movies", json={"title": "Nope", "durationMinutes": 90})
    body = assert_status_body(reply, 401, 16)
    assert reply.headers["www-authenticate"] == 'Bearer realm="cinema"'
    assert ERROR_INFO in {d["@type"] for d in body["details"]}


def test_badly_signed_token_is_401_invalid_token(client: httpx.Client, identity: Identity) -> None:
    # Same issuer, audience and kid, another key: the signature does not verify.
    stranger = LocalTokenIssuer(kid=identity.issuer.kid).current_key
    token = identity.issuer.mint("manager-gw", roles={"manager"}, key=stranger)
    reply = client.post(
        "/v1/movies", json={"title": "Nope", "durationMinutes": 90}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_status_body(reply, 401, 16)
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


def test_customer_calling_a_manager_rpc_is_403(client: httpx.Client, identity: Identity) -> None:
    reply = client.post(
        "/v1/movies", json={"title": "Nope", "durationMinutes": 90}, headers=bearer(identity, "c-1", "customer")
    )
    body = assert_status_body(reply, 403, 7)
    reasons = {d.get("reason") for d in body["details"] if d["@type"] == ERROR_INFO}
    assert "PERMISSION_DENIED" in reasons


def test_unknown_movie_is_404(client: httpx.Client) -> None:
    assert_status_body(client.get(f"/v1/movies/{uuid.uuid4()}"), 404, 5)


def test_invalid_movie_is_400_with_the_field_violations(client: httpx.Client, manager: dict[str, str]) -> None:
    reply = client.post("/v1/movies", json={"title": "", "durationMinutes": 0}, headers=manager)
    body = assert_status_body(reply, 400, 3)
    violations = [v for d in body["details"] if d["@type"] == BAD_REQUEST for v in d["fieldViolations"]]
    fields = {v["field"] for v in violations}
    assert any("title" in f for f in fields), violations
    assert any("duration" in f for f in fields), violations


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/movies", b"{not json"),
        ("/v1/movies", b'{"title": 5, "durationMinutes": 90}'),
        ("/v1/movies", b'{"title": "x", "durationMinutes": "ninety"}'),
        ("/v1/movies", b'["a", "list"]'),
        ("/v1/movies", b"\xff\xfe binary"),
    ],
)
def test_malformed_or_mistyped_json_is_400_never_500(
    client: httpx.Client, manager: dict[str, str], path: str, payload: bytes
) -> None:
    reply = client.post(path, content=payload, headers={**manager, "Content-Type": "application/json"})
    assert_status_body(reply, 400, 3)


def test_mistyped_query_parameter_is_400(client: httpx.Client) -> None:
    assert_status_body(client.get("/v1/movies", params={"pageSize": "many"}), 400, 3)


def test_unknown_route_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert_status_body(client.get("/v1/nothing-here"), 404, 5)
    assert_status_body(client.put("/v1/movies"), 405, 12)


def test_review_author_is_the_subject_of_the_forwarded_token(
    client: httpx.Client, identity: Identity, manager: dict[str, str]
) -> None:
    """Authorization reaches the service: it names the review's author from the token."""
    subject = f"customer-{uuid.uuid4().hex[:6]}"
    customer = bearer(identity, subject, "customer", name="Ada Lovelace")
    # a movie nobody registered is 404 (review's replica of the catalog); a real one, once the
    # replica has its MovieRegistered event, takes the review
    unknown = client.post(f"/v1/movies/{uuid.uuid4()}/reviews", json={"rating": 5}, headers=customer)
    assert_status_body(unknown, 404, 5)
    movie_id = create_movie(client, manager, "Reviewed")["id"]
    deadline = time.monotonic() + 15
    while True:
        reply = client.post(f"/v1/movies/{movie_id}/reviews", json={"rating": 5, "text": "Superb"}, headers=customer)
        if reply.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply.status_code == 200, reply.text
    review = reply.json()["review"]
    assert (review["customerId"], review["authorName"], review["movieId"]) == (subject, "Ada Lovelace", movie_id)
    listed = client.get(f"/v1/movies/{movie_id}/reviews").json()["reviews"]
    assert [r["id"] for r in listed] == [review["id"]]


async def test_traceparent_reaches_the_service_and_its_events(
    gateway: Gateway, catalog: Catalog, manager: dict[str, str]
) -> None:
    """The caller's trace id is continued by the movie service: it is in the MovieRegistered
    envelope the service publishes, and in the gateway's access log line."""
    trace_id = uuid.uuid4().hex
    headers = {**manager, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01", "x-request-id": "gw-test-42"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as http:
        reply = await http.post("/v1/movies", json={"title": "Traced", "durationMinutes": 100}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "gw-test-42"
    movie_id = reply.json()["movie"]["id"]

    nc = NATS()
    await nc.connect(catalog.nats.url, connect_timeout=2)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("cinema.movie.>", ordered_consumer=True)
        envelope = None
        deadline = asyncio.get_running_loop().time() + 20
        while envelope is None and asyncio.get_running_loop().time() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except TimeoutError:
                continue
            candidate = EventEnvelope.FromString(msg.data)
            if candidate.aggregate_id == movie_id:
                envelope = candidate
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert envelope is not None, "no event of the movie created through the gateway"
    assert envelope.traceparent.split("-")[1] == trace_id, envelope.traceparent

    line = next(
        (entry for entry in gateway.log_lines() if entry.get("request_id") == "gw-test-42"),
        None,
    )
    assert line is not None
    assert line["trace_id"] == trace_id
    assert line["rpc"] == "/cinema.movie.v1.MovieService/CreateMovie"
    assert (line["method"], line["path"], line["status"], line["grpc_code"]) == ("POST", "/v1/movies", 200, "OK")
    assert line["route"] == "/v1/movies"
    assert line["duration_ms"] > 0


def test_scheduled_movie_reaches_the_board(client: httpx.Client, manager: dict[str, str]) -> None:
    """A manager schedules a screening over REST; the viewpage service (fed by events) shows it
    on the public board, also read over REST."""
    movie = create_movie(client, manager, f"Board {uuid.uuid4().hex[:6]}")
    start = (datetime.now(UTC) + timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    reply = client.post(
        f"/v1/movies/{movie['id']}/screenings",
        json={
            "hall": f"Hall {uuid.uuid4().hex[:6]}",
            "startTime": start.isoformat().replace("+00:00", "Z"),
            "seatMap": {"rows": 4, "seatsPerRow": 10},
            "price": {"minorUnits": "1200", "currencyCode": "EUR"},
        },
        headers=manager,
    )
    assert reply.status_code == 200, reply.text
    screening_id = reply.json()["screening"]["id"]

    deadline = time.monotonic() + 30
    entry = None
    while time.monotonic() < deadline:
        board = client.get("/v1/board")
        assert board.status_code == 200, board.text
        entry = next((m for m in board.json()["movies"] if m["movieId"] == movie["id"]), None)
        if entry and entry["screenings"]:
            break
        time.sleep(0.2)
    assert entry is not None and entry["screenings"], "the screening never reached the board"
    assert entry["screenings"][0]["screeningId"] == screening_id
    assert entry["screenings"][0]["freeSeats"] == 40
    single = client.get(f"/v1/board/movies/{movie['id']}")
    assert single.status_code == 200, single.text


def test_down_service_is_503_while_the_others_serve(client: httpx.Client, identity: Identity) -> None:
    reply = client.get(f"/v1/payments/{uuid.uuid4()}", headers=bearer(identity, "c-2", "customer"))
    body = assert_status_body(reply, 503, 14)
    assert "cinema.payment.v1.PaymentService" in body["message"]
    assert "127.0.0.1" not in body["message"]  # the upstream address is for the log, not the client
    assert client.get("/v1/movies").status_code == 200


def test_health_reports_each_upstream(client: httpx.Client) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json()["status"] == "SERVING"
    upstreams = client.get("/healthz", params={"upstreams": "1"}).json()["upstreams"]
    assert {name: u["status"] for name, u in upstreams.items()} == {
        "movie": "SERVING",
        "review": "SERVING",
        "viewpage": "SERVING",
        "reservation": "UNAVAILABLE",
        "payment": "UNAVAILABLE",
        "notification": "UNAVAILABLE",
    }


def test_metrics_count_requests_by_route_template(client: httpx.Client, gateway: Gateway) -> None:
    client.get(f"/v1/movies/{uuid.uuid4()}")
    text = httpx.get(gateway.metrics_url, timeout=5).text
    assert 'gateway_http_requests_total{method="GET",route="/v1/movies/{movie_id}",status="404"}' in text
    assert 'gateway_upstream_calls_total{code="NOT_FOUND",rpc="/cinema.movie.v1.MovieService/GetMovie"}' in text
    assert "gateway_http_requests_in_flight" in text


def _schedule(client: httpx.Client, manager: dict[str, str], movie_id: str, start: datetime) -> str:
    reply = client.post(
        f"/v1/movies/{movie_id}/screenings",
        json={
            "hall": f"Hall {uuid.uuid4().hex[:6]}",
            "startTime": start.isoformat().replace("+00:00", "Z"),
            "seatMap": {"rows": 2, "seatsPerRow": 5},
            "price": {"minorUnits": "900", "currencyCode": "EUR"},
        },
        headers=manager,
    )
    assert reply.status_code == 200, reply.text
    screening_id: str = reply.json()["screening"]["id"]
    return screening_id


def _board_until(client: httpx.Client, params: dict[str, Any], movies: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        reply = client.get("/v1/board", params=params)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        if len(body["movies"]) == movies or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.fixture(scope="module")
def paged_genre(client: httpx.Client, manager: dict[str, str]) -> tuple[str, list[str], datetime]:
    """Three movies of a genre of their own, each with a screening on one day (the first with a
    second one the next day), on the board."""
    genre = f"gw-{uuid.uuid4().hex[:8]}"
    day = (datetime.now(UTC) + timedelta(days=50)).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = []
    for title in ("Paged B", "Paged A", "Paged C"):
        reply = client.post(
            "/v1/movies",
            json={"title": title, "durationMinutes": 90, "genres": [genre]},
            params={"requestId": str(uuid.uuid4())},
            headers=manager,
        )
        assert reply.status_code == 200, reply.text
        ids.append(reply.json()["movie"]["id"])
        _schedule(client, manager, ids[-1], day)
    _schedule(client, manager, ids[1], day + timedelta(days=1))
    assert len(_board_until(client, {"genre": genre}, 3)["movies"]) == 3
    # Events reach the board in any order: wait for the last screening too.
    next_day = (day + timedelta(days=1)).date().isoformat()
    assert len(_board_until(client, {"genre": genre, "showingOn": next_day}, 1)["movies"]) == 1
    return genre, ids, day


def test_the_board_pages_and_filters_over_query_parameters(
    client: httpx.Client, paged_genre: tuple[str, list[str], datetime]
) -> None:
    genre, (b, a, c), day = paged_genre
    first = client.get("/v1/board", params={"genre": genre, "pageSize": 2}).json()
    assert [m["movieId"] for m in first["movies"]] == [a, b]
    assert first["nextPageToken"] and first["timeZone"] == "UTC"
    assert day.date().isoformat() in first["days"]
    rest = client.get("/v1/board", params={"genre": genre, "pageSize": 2, "pageToken": first["nextPageToken"]}).json()
    assert [m["movieId"] for m in rest["movies"]] == [c] and rest["nextPageToken"] == ""
    # The day filter: movies with a screening that day, each with that day's screenings only.
    next_day = (day + timedelta(days=1)).date().isoformat()
    only = client.get("/v1/board", params={"genre": genre, "showingOn": next_day}).json()
    assert [m["movieId"] for m in only["movies"]] == [a]
    assert [s["startTime"][:10] for s in only["movies"][0]["screenings"]] == [next_day]
    both = client.get("/v1/board", params={"genre": genre, "showing_on": day.date().isoformat()}).json()
    assert [len(m["screenings"]) for m in both["movies"]] == [1, 1, 1]
    single = client.get("/v1/board", params={"movieId": a}).json()
    assert [m["movieId"] for m in single["movies"]] == [a] and len(single["movies"][0]["screenings"]) == 2

    for params, field in (
        ({"genre": genre, "pageToken": "not-a-token"}, "page_token"),
        ({"genre": "other", "pageToken": first["nextPageToken"]}, "page_token"),
        ({"pageSize": 101}, "page_size"),
        ({"showingOn": "next friday"}, "showing_on"),
        ({"showingOn": "2030-02-31"}, "showing_on"),
        ({"movieId": "42"}, "movie_id"),
    ):
        body = assert_status_body(client.get("/v1/board", params=params), 400, 3)
        assert field in body["message"], body


def test_public_reads_carry_an_etag_and_answer_304_when_unchanged(
    client: httpx.Client, identity: Identity, manager: dict[str, str], paged_genre: tuple[str, list[str], datetime]
) -> None:
    genre, (_, a, c), day = paged_genre
    for path, params in (
        ("/v1/board", {"genre": genre}),
        (f"/v1/board/movies/{a}", {}),
        ("/v1/movies", {"pageSize": 5}),
        (f"/v1/movies/{a}", {}),
    ):
        reply = client.get(path, params=params)
        assert reply.status_code == 200, reply.text
        tag = reply.headers["etag"]
        assert tag.startswith('"') and tag.endswith('"') and len(tag) == 34
        assert reply.headers["cache-control"] == "public, max-age=5"
        assert "Authorization" in reply.headers["vary"]
        again = client.get(path, params=params, headers={"If-None-Match": tag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag), path
        assert again.headers["cache-control"] == "public, max-age=5"
        other = client.get(path, params=params, headers={"If-None-Match": '"something-else"'})
        assert (other.status_code, other.headers["etag"], other.content) == (200, tag, reply.content)
        # Signed in: never a shared-cache answer, never a 304.
        signed = client.get(path, params=params, headers={**bearer(identity, "c-9", "customer"), "If-None-Match": tag})
        assert signed.status_code == 200 and "etag" not in signed.headers
        assert signed.headers["cache-control"] == "private, no-store"
    mine = client.get("/v1/board/reservations", headers=bearer(identity, "c-9", "customer"))
    assert mine.status_code == 200 and "etag" not in mine.headers
    assert mine.headers["cache-control"] == "private, no-store"
    missing = client.get(f"/v1/movies/{uuid.uuid4()}")
    assert missing.status_code == 404 and "etag" not in missing.headers

    # A change of the board changes the tag: the old one gets the new answer.
    before = client.get("/v1/board", params={"genre": genre})
    _schedule(client, manager, c, day + timedelta(days=2))
    deadline = time.monotonic() + 30
    while True:
        after = client.get("/v1/board", params={"genre": genre}, headers={"If-None-Match": before.headers["etag"]})
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert len(next(m for m in after.json()["movies"] if m["movieId"] == c)["screenings"]) == 2
