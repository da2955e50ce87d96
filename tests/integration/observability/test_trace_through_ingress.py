"""One reservation, one trace, from the edge: a whole scratch stack as `make up` runs it (Jaeger,
Envoy, identity, the gateway, the six services) and a reservation made through the ingress,
over REST (Envoy -> gateway -> reservation) and over gRPC (Envoy -> reservation). The trace is
read back from that stack's Jaeger and every hop is checked with its parent: the ingress span at
the root, the gateway's server and client spans, reservation, payment (through Envoy's egress),
the outbox relay's publish and both consumers.

The stack is the real supervisor (`python -m scripts.stack up`) in a scratch folder with every
port free, so it never meets a developer's own `make up`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from cinema.payment.v1.payment_pb2 import Card
from cinema.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from scripts.observability.jaeger import JaegerQuery, TraceSpan, ancestors, render_tree, spans_of
from scripts.stack import edge
from tests.integration.observability.test_trace import AUTHORIZE, CONFIRMED, CREATE, one, trace_of
from tests.support.scratch_stack import ScratchStack, scratch_stack

pytestmark = pytest.mark.integration

CARD = {"number": "4242424242424242", "expiryMonth": 12, "expiryYear": 2035, "cvc": "123"}
INGRESS = "envoy-ingress"  # Envoy's tracer names each listener's spans envoy-<listener>


class Stack(ScratchStack):
    @property
    def jaeger(self) -> JaegerQuery:
        return JaegerQuery(f"http://127.0.0.1:{self.port('CINEMA_JAEGER_QUERY_PORT')}")

    def customer_token(self) -> str:
        return self.token(edge.DEMO_CUSTOMER)

    def free_seats(self, count: int, token: str, rows: str) -> tuple[str, list[str]]:
        movie = httpx.get(f"{self.base}/v1/movies", timeout=30).json()["movies"][0]
        screening = httpx.get(f"{self.base}/v1/movies/{movie['id']}/screenings", timeout=30).json()["screenings"][0]
        reply = httpx.get(
            f"{self.base}/v1/screenings/{screening['id']}/availability",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        taken = set(reply.json().get("takenSeats") or [])
        free = [f"{row}{n}" for row in rows for n in range(1, 13) if f"{row}{n}" not in taken]
        return str(screening["id"]), free[:count]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Every trace recorded: `make up` records a tenth of them by default.
    with scratch_stack("trace-edge", Stack, {"CINEMA_TRACE_SAMPLE_RATIO": "1"}) as running:
        yield running


def is_envoy(span: TraceSpan) -> bool:
    return span.service.startswith("envoy-")


def child_through_envoy(spans: dict[str, TraceSpan], child: TraceSpan, parent: TraceSpan) -> None:
    """`child` descends from `parent` with nothing but Envoy's spans (the mesh hop) in between."""
    chain = ancestors(spans, child)
    assert parent in chain, f"{child.service} {child.name} is not under {parent.service} {parent.name}"
    between = chain[: chain.index(parent)]
    assert all(is_envoy(s) for s in between), [f"{s.service} {s.name}" for s in between]


def reservation_hops(spans: dict[str, TraceSpan], reservation_id: str, tree: str) -> TraceSpan:
    """The part every booking shares, below reservation's server span (which it returns)."""
    server = one(spans, "reservation", "server", CREATE)
    assert server.tags.get("cinema.reservation_id") == reservation_id, tree
    client = one(spans, "reservation", "client", AUTHORIZE)
    assert server in ancestors(spans, client), tree
    payment = one(spans, "payment", "server", AUTHORIZE)
    child_through_envoy(spans, payment, client)  # through Envoy's payment egress
    publish = one(spans, "reservation", "producer", "publish cinema.reservation.confirmed")
    assert publish.parent_id == server.span_id, tree
    for consumer in ("viewpage", "notification"):
        handled = one(spans, consumer, "consumer", f"consume {CONFIRMED}")
        assert handled.parent_id == server.span_id, tree  # the creation context of the event
    return server


def complete(spans: dict[str, TraceSpan]) -> bool:
    """Every process has exported its part (Envoy and the SDKs export in batches, seconds apart)."""
    kinds = {(s.service, s.kind) for s in spans.values()}
    needed = {("viewpage", "consumer"), ("notification", "consumer"), ("payment", "server")}
    needed.add(("reservation", "producer"))
    return needed <= kinds and any(s.service == INGRESS for s in spans.values())


def root_of(spans: dict[str, TraceSpan], tree: str) -> TraceSpan:
    roots = [s for s in spans.values() if s.parent_id is None or s.parent_id not in spans]
    assert len(roots) == 1, f"one root expected, got {[f'{s.service} {s.name}' for s in roots]}\n{tree}"
    assert roots[0].service == INGRESS, tree
    return roots[0]


async def test_a_rest_reservation_is_one_trace_from_the_ingress_through_the_gateway(stack: Stack) -> None:
    token = await asyncio.to_thread(stack.customer_token)
    screening_id, seats = await asyncio.to_thread(stack.free_seats, 2, token, "ABC")
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        created = await http.post(
            "/v1/reservations",
            headers={"Authorization": f"Bearer {token}"},
            json={"screeningId": screening_id, "seats": seats, "requestId": str(uuid.uuid4()), "card": CARD},
        )
    assert created.status_code == 200, created.text
    reservation_id = created.json()["reservation"]["id"]

    def with_gateway(spans: dict[str, TraceSpan]) -> bool:
        return complete(spans) and any(s.service == "gateway" for s in spans.values())

    trace = await trace_of(stack.jaeger, "reservation", {"cinema.reservation_id": reservation_id}, with_gateway, 60)
    spans = spans_of(trace)
    tree = render_tree(trace)

    ingress = root_of(spans, tree)
    gateway = one(spans, "gateway", "server", "POST /v1/reservations")
    assert gateway.parent_id == ingress.span_id, tree
    assert gateway.tags.get("http.response.status_code") == 200, tree
    call = one(spans, "gateway", "client", CREATE)
    assert call.parent_id == gateway.span_id, tree
    server = reservation_hops(spans, reservation_id, tree)
    child_through_envoy(spans, server, call)  # through Envoy's reservation egress


async def test_a_grpc_reservation_is_one_trace_from_the_ingress(stack: Stack) -> None:
    token = await asyncio.to_thread(stack.customer_token)
    screening_id, seats = await asyncio.to_thread(stack.free_seats, 2, token, "HGF")
    async with grpc.aio.insecure_channel(stack.ingress) as channel:
        created = await reservation_pb2_grpc.ReservationServiceStub(channel).CreateReservation(
            reservation_pb2.CreateReservationRequest(
                screening_id=screening_id,
                seats=seats,
                request_id=str(uuid.uuid4()),
                card=Card(number="4242424242424242", expiry_month=12, expiry_year=2035, cvc="123"),
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
    reservation_id = created.reservation.id

    trace = await trace_of(stack.jaeger, "reservation", {"cinema.reservation_id": reservation_id}, complete, 60)
    spans = spans_of(trace)
    tree = render_tree(trace)

    ingress = root_of(spans, tree)
    assert not [s for s in spans.values() if s.service == "gateway"], tree
    server = reservation_hops(spans, reservation_id, tree)
    child_through_envoy(spans, server, ingress)
