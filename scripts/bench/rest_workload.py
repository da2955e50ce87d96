"""The mixed workload over REST/JSON: the same operations as scripts/bench/workload.py, sent the way
a browser or `curl` sends them, through the Envoy ingress and the grpc-gateway bridge
(`--target rest`).

Each operation is one HTTP/1.1 request on a pool of kept-alive connections; a refusal is the
gateway's (or Envoy's) `google.rpc.Status` JSON, whose numeric `code` names the gRPC status, so
the error counts read like the gRPC run's (UNAVAILABLE, RESOURCE_EXHAUSTED, ...). The seat
bookkeeping, the reservations to cancel and the event-to-board lag probes (gRPC through the same
ingress) are the gRPC workload's own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx

from scripts.bench.openloop import SKIPPED
from scripts.bench.workload import _REVIEW_TEXTS, APPROVED_CARD, Workload

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
CONFIRMED = "RESERVATION_STATE_CONFIRMED"


def _card() -> dict[str, Any]:
    c = APPROVED_CARD
    return {"number": c.number, "expiryMonth": c.expiry_month, "expiryYear": c.expiry_year, "cvc": c.cvc}


def error_code(reply: httpx.Response) -> str:
    """The gRPC status name a refusal stands for (from its google.rpc.Status body), else HTTP_<status>."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] in _CODE_NAMES:
        return _CODE_NAMES[body["code"]]
    return f"HTTP_{reply.status_code}"


@dataclass
class RestWorkload(Workload):
    """`Workload` with every operation sent over REST to `base_url` (the ingress)."""

    base_url: str = ""
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self.rpc_timeout_s,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        )

    @staticmethod
    def _auth(metadata: Any) -> dict[str, str]:
        return {key.title(): value for key, value in metadata}

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[dict[str, Any] | None, str | None]:
        try:
            reply = await self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            return None, "DEADLINE_EXCEEDED"
        except httpx.HTTPError as error:
            return None, f"CLIENT_{type(error).__name__}"
        if reply.status_code >= 400:
            return None, error_code(reply)
        body = reply.json() if reply.content else {}
        return body if isinstance(body, dict) else {}, None

    async def get_board(self) -> str | None:
        _body, code = await self._request("GET", "/v1/board", params={"pageSize": 24})
        return code

    async def get_movie_board(self) -> str | None:
        movie_id = self.rng.choice(self.catalog.movie_ids)
        _body, code = await self._request("GET", f"/v1/board/movies/{movie_id}")
        return code

    async def get_movie(self) -> str | None:
        movie_id = self.rng.choice(self.catalog.movie_ids)
        _body, code = await self._request("GET", f"/v1/movies/{movie_id}")
        return code

    async def reserve(self) -> str | None:
        taken = self._take_seats()
        if taken is None:
            return "CLIENT_SOLD_OUT"
        screening_id, seats = taken
        customer = self.rng.choice(self.tokens.customers)
        payload = {"screeningId": screening_id, "seats": seats, "requestId": str(uuid.uuid4()), "card": _card()}
        body, code = await self._request(
            "POST", "/v1/reservations", json=payload, headers=self._auth(customer.metadata)
        )
        if code is not None:
            return code
        reservation = (body or {}).get("reservation", {})
        if reservation.get("state") != CONFIRMED:
            return f"STATE_{reservation.get('state')}"
        self._confirmed_now(str(reservation["id"]), customer, len(seats))
        return None

    async def cancel(self) -> str | None:
        picked = self._pick_confirmed()
        if picked is None:
            return SKIPPED
        reservation_id, customer = picked
        _body, code = await self._request(
            "POST",
            f"/v1/reservations/{reservation_id}:cancel",
            json={"reason": "bench"},
            headers=self._auth(customer.metadata),
        )
        return code

    async def review(self) -> str | None:
        picked = self._pick_review()
        if picked is None:
            return SKIPPED
        customer, movie_id = picked
        review = {"rating": self.rng.randint(1, 5), "text": self.rng.choice(_REVIEW_TEXTS)}
        _body, code = await self._request(
            "POST",
            f"/v1/movies/{movie_id}/reviews",
            params={"requestId": str(uuid.uuid4())},
            json=review,
            headers=self._auth(customer.metadata),
        )
        return code

    async def close(self) -> None:
        await self.client.aclose()
        await self.channels.close()
